"""The MLP GAN of the classic tutorial, and its conditional form (`cgan`, Mirza & Osindero 2014).

G: z (latent_dim) [+ Embedding(num_classes, embed_dim)(c)] → Linear 256 → LReLU(0.2) → BN →
   Linear 512 → LReLU → BN → Linear 1024 → LReLU → BN → Linear prod(shape) → Tanh for images
   (identity for 2-D points, whose coordinates are not bounded to [-1, 1]).
   1,489,936 parameters for 28×28×1; 1,503,236 conditional with 10 classes.
D: x flattened [+ Embedding(num_classes, embed_dim)(c)] → Linear 512 → LReLU → Dropout(0.3) →
   Linear 256 → LReLU → Dropout(0.3) → [minibatch std] → Linear 1 (a logit; the loss applies the
   sigmoid in its stable logits form). 533,505 parameters for 28×28×1; 559,605 conditional.
   PacGAN packing (Lin et al. 2018, `model.pack=m`): D reads m samples at once, their flattened
   inputs (and label embeddings) concatenated into one row of width m·(prod(shape) [+ embed]),
   and gives one logit per pack (N/m,); the batch must divide by m.
`model.g_norm=none` drops G's BatchNorm layers and `model.g_activation=relu` replaces its LeakyReLUs
(together: the precise 2-D mixture G of configs/experiment/ring8.yaml, grid25.yaml).
`model.g_widths` / `model.d_widths` replace the hidden widths (the PacGAN mixture nets are
G 400×4, D 200×3); on the 2-D mixtures configs/dataset_model/ sets 3 × 128 for both.
`model.latent_components=K` feeds G a categorical code drawn from z's first coordinate (K learned
embeddings of embed_dim, layers.CategoricalLatent), so G can map disconnected modes from disjoint
pieces of its input instead of drawing bridges between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import nn

from ganrun.config.schema import ModelConfig
from ganrun.config.validate import one_of
from ganrun.errors import UserError
from ganrun.models.base import Discriminator, Generator, assert_shape, register_family
from ganrun.models.layers import CategoricalLatent, MinibatchStdDev, apply_spectral_norm

G_WIDTHS = (256, 512, 1024)
G_NORMS = ("batch", "none")
G_ACTIVATIONS = {"leaky_relu": lambda: nn.LeakyReLU(0.2), "relu": nn.ReLU}
D_WIDTHS = (512, 256)


@dataclass
class MLPConfig(ModelConfig):
    """`model=mlp` and `model=cgan` (the shared keys, plus these)."""

    dropout: float = 0.3  # D dropout probability
    minibatch_std: bool = False  # minibatch standard-deviation feature before D's last layer
    pack: int = 1  # PacGAN packing: D judges m consecutive samples at once, concatenated; 1: off
    g_widths: list[int] = field(default_factory=list)  # G hidden widths; []: (256, 512, 1024)
    d_widths: list[int] = field(default_factory=list)  # D hidden widths; []: (512, 256)
    g_norm: str = "batch"  # G normalization after each hidden activation: batch (BatchNorm1d) or none
    g_activation: str = "leaky_relu"  # G hidden activation: leaky_relu (slope 0.2) or relu
    latent_components: int = 0  # a categorical code of this many components, drawn from z's first coordinate; 0: off

    def check(self, spec=None) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.pack < 1:
            raise UserError(f"model.pack must be >= 1, got {self.pack}")
        if self.latent_components < 0 or self.latent_components == 1:
            raise UserError(f"model.latent_components must be 0 (off) or >= 2, got {self.latent_components}")
        if self.latent_components and self.latent_dim < 2:
            raise UserError(f"model.latent_components={self.latent_components} draws the code from z's first "
                            f"coordinate and needs model.latent_dim >= 2, got {self.latent_dim}")
        one_of("model.g_norm", self.g_norm, G_NORMS)
        one_of("model.g_activation", self.g_activation, list(G_ACTIVATIONS))
        for key in ("g_widths", "d_widths"):
            if any(w <= 0 for w in getattr(self, key)):
                raise UserError(f"model.{key} must list positive widths, got {list(getattr(self, key))}")


class MLPGenerator(Generator):
    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], num_classes: int = 0,
                 embed_dim: int = 50, tanh: bool = True, widths: Sequence[int] = G_WIDTHS,
                 norm: str = "batch", activation: str = "leaky_relu", latent_components: int = 0) -> None:
        super().__init__(latent_dim, out_shape, num_classes)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.code = CategoricalLatent(latent_components, embed_dim) if latent_components else None
        layers: list[nn.Module] = []
        width = latent_dim + (embed_dim if num_classes else 0) + (embed_dim - 1 if latent_components else 0)
        for out in widths:
            layers += [nn.Linear(width, out), G_ACTIVATIONS[activation]()]
            layers += [nn.BatchNorm1d(out)] if norm == "batch" else []
            width = out
        layers.append(nn.Linear(width, math.prod(out_shape)))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def synthesize(self, z: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        if self.code is not None:
            z = self.code(z)  # (N, latent - 1 + embed)
        if self.embed is not None:
            z = torch.cat([z, self.embed(c)], dim=1)  # (N, latent + embed)
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(Discriminator):
    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 0, embed_dim: int = 50,
                 dropout: float = 0.3, minibatch_std: bool = False, pack: int = 1,
                 widths: Sequence[int] = D_WIDTHS) -> None:
        super().__init__(in_shape, num_classes)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.pack = pack
        layers: list[nn.Module] = []
        width = pack * (math.prod(in_shape) + (embed_dim if num_classes else 0))
        for out in widths:
            layers += [nn.Linear(width, out), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = out
        self.features = nn.Sequential(*layers)
        # within class when conditional and unpacked (a packed row mixes labels)
        self.mbstd = MinibatchStdDev(num_classes=num_classes if pack == 1 else 0) if minibatch_std else None
        self.head = nn.Linear(width + (1 if minibatch_std else 0), 1)

    def forward_features(self, x: torch.Tensor, c: Optional[torch.Tensor] = None):
        assert_shape(x, (None, *self.in_shape), "D input")
        if x.shape[0] % self.pack:
            raise ValueError(f"model.pack={self.pack}: D got a batch of {x.shape[0]}, which it does not divide")
        h = x.flatten(1)  # (N, prod(shape))
        if self.embed is not None:
            h = torch.cat([h, self.embed(c)], dim=1)
        h = h.reshape(h.shape[0] // self.pack, -1)  # (N/m, m·width): consecutive samples packed
        feats = self.features(h)  # (N/m, widths[-1])
        logits = self.head(feats if self.mbstd is None else self.mbstd(feats, c)).squeeze(1)  # (N/m,)
        return logits, feats


# `cgan` is the same builder; its YAML sets `conditional: true`. Any data shape: images or 2-D points.
@register_family("mlp", "cgan", schema=MLPConfig)
def build_mlp(cfg: MLPConfig, spec):
    num_classes = spec.num_classes if cfg.conditional else 0
    G = MLPGenerator(cfg.latent_dim, spec.shape, num_classes, cfg.embed_dim, tanh=spec.is_image,
                     widths=tuple(cfg.g_widths) or G_WIDTHS, norm=cfg.g_norm,
                     activation=cfg.g_activation, latent_components=cfg.latent_components)
    D = MLPDiscriminator(spec.shape, num_classes, cfg.embed_dim, cfg.dropout, cfg.minibatch_std, cfg.pack,
                         widths=tuple(cfg.d_widths) or D_WIDTHS)
    if cfg.spectral_norm:
        apply_spectral_norm(D)
    return G, D
