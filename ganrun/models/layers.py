"""Building blocks shared by the families: a categorical latent code, minibatch stddev, spectral norm, DCGAN init."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class CategoricalLatent(nn.Module):
    """A categorical latent code drawn from G's own N(0, I) input: z's first coordinate picks one of
    K learned embeddings, k = floor(K * Phi(z_0)) (uniform over the K components, since Phi(z_0) is
    uniform), and the rest of z stays continuous: (N, D) -> (N, D - 1 + embed_dim).

    A continuous G of one Gaussian must join disconnected modes with bridges of samples between
    them; G fed a discrete code can send each component to its own mode (a disconnected latent, as
    in DeLiGAN, Gurumurthy et al. 2017, and InfoGAN's categorical code without its mutual-information
    term). z keeps its N(0, I) contract, so sampling, evaluation and ONNX export are unchanged
    (Phi is written with erf, an ONNX operator).
    """

    def __init__(self, components: int, embed_dim: int) -> None:
        super().__init__()
        self.components = components
        self.embed = nn.Embedding(components, embed_dim)

    def component(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) long: the component each z draws, from its first coordinate alone."""
        uniform = 0.5 * (1.0 + torch.erf(z[:, 0] / math.sqrt(2.0)))  # Phi(z_0), in [0, 1]
        return (uniform * self.components).long().clamp(max=self.components - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([z[:, 1:], self.embed(self.component(z))], dim=1)


class MinibatchStdDev(nn.Module):
    """Append the mean (over features) of the per-feature std across groups of the batch.

    Gives D a direct view of sample diversity, so a collapsed G is easy to spot (Karras et al.
    2018). Works on (N, F) vectors and (N, C, H, W) maps; adds one feature / one channel.

    With `num_classes` (a conditional D) and labels `c`, a group is the batch's samples of one
    class: the std is taken within each class. Groups that mix classes measure how the classes
    differ, which a G that draws one image per class keeps high; within a class the std is what
    such a G loses. A class with a single sample in the batch reads 0, in real and fake batches
    alike (D's fakes take the reals' labels).
    """

    def __init__(self, group_size: int = 4, num_classes: int = 0) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = x.shape[0]
        y = self._per_class(x, c) if self.num_classes and c is not None else self._per_group(x)  # (N,)
        y = y.to(x.dtype)
        if x.ndim == 2:
            return torch.cat([x, y[:, None]], dim=1)
        return torch.cat([x, y[:, None, None, None].expand(n, 1, *x.shape[2:])], dim=1)

    def _per_group(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        g = min(self.group_size, n)
        if n % g:
            g = 1 if n % 2 else 2
        y = x.reshape(g, -1, *x.shape[1:]).float()  # (G, N/G, ...)
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()  # (N/G, ...) std over the group
        return y.flatten(1).mean(1).repeat(g)  # (N,)

    def _per_class(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Pure tensor work (one-hot matmuls, no host sync on the labels), so the step stays capturable."""
        onehot = nn.functional.one_hot(c, self.num_classes).float()  # (N, K)
        counts = onehot.sum(0).clamp_min(1.0)[:, None]  # (K, 1)
        flat = x.flatten(1).float()  # (N, F)
        mean = onehot.T @ flat / counts  # (K, F)
        var = onehot.T @ (flat - onehot @ mean).square() / counts  # (K, F) within-class variance
        return onehot @ var.add(1e-8).sqrt().mean(1)  # (N,) each sample's class spread


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap every Linear/Conv/ConvTranspose weight of `module` in spectral normalization."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            apply_spectral_norm(child)
    return module


def dcgan_init(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN initialization (Radford et al. 2016): conv weights N(0, std); BatchNorm weight N(1, std),
    bias 0. Other layers keep PyTorch's defaults."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module
