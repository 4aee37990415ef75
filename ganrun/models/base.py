"""The G/D contracts, the registry, and the builder that checks a model fits its data."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ganrun.errors import UserError
from ganrun.registry import Registry


def assert_shape(x: torch.Tensor, shape: tuple, what: str) -> None:
    """Check x's shape against `shape` (None entries match anything)."""
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        raise ValueError(f"{what}: expected shape {shape}, got {tuple(x.shape)}")


class Generator(nn.Module):
    """G(z, c) → samples (N, *out_shape). Subclasses implement `synthesize`."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], num_classes: int = 0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.out_shape = tuple(out_shape)
        self.num_classes = num_classes  # 0: unconditional

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        assert_shape(z, (None, self.latent_dim), "G input z")
        x = self.synthesize(z, c)
        assert_shape(x, (z.shape[0], *self.out_shape), "G output")
        return x

    def synthesize(self, z: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class Discriminator(nn.Module):
    """D(x, c) → logits (N,). Subclasses implement `forward_features` → (logits (N,), features (N, F))."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 0) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.forward_features(x, c)[0]

    def forward_features(self, x: torch.Tensor, c: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


Builder = Callable[..., tuple[Generator, Discriminator]]
MODELS: Registry[Builder] = Registry("model")


def build_models(cfg, spec) -> tuple[Generator, Discriminator]:
    """Build (G, D) for `cfg.name` (a ModelConfig) sized by `spec` (a DataSpec); loads no weights.

    A conditional model needs a labelled dataset; that is checked here, where both are known.
    """
    if cfg.conditional and spec.num_classes < 2:
        raise UserError(
            f"model={cfg.name} is conditional but dataset={spec.name} has no class labels; "
            "choose a labelled dataset (fashion_mnist, mnist, cifar10, a folder with class "
            "subfolders) or an unconditional model"
        )
    return MODELS.get(cfg.name)(cfg, spec)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
