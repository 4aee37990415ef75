"""The G/D contracts, the family registry, and the builder that checks a model fits its data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ganrun.config.schema import ModelConfig
from ganrun.config.store import store_model_schema
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


@dataclass(frozen=True)
class Family:
    """What `model=<name>` selects: the dataclass of its `model.*` keys and the builder."""

    name: str  # config name: configs/model/<name>.yaml
    schema: type  # a ModelConfig subclass; stored in Hydra's ConfigStore as schema_model_<name>
    build: Builder  # (cfg: schema, spec: DataSpec) -> (G, D), called after cfg.check(spec)


MODELS: Registry[Family] = Registry("model")


def register_family(*names: str, schema: type) -> Callable[[Builder], Builder]:
    """Decorator on a builder: `@register_family("dcgan", "cdcgan", schema=DCGANConfig)`.

    Each name is a config option (its YAML sets what differs, e.g. `conditional: true`); the
    schema's `check(spec)` holds the family's own rules (key ranges, the data it can model).
    """
    if not (isinstance(schema, type) and issubclass(schema, ModelConfig)):
        raise TypeError(f"the schema of model {names} must be a ModelConfig dataclass, got {schema!r}")

    def add(build: Builder) -> Builder:
        for name in names:
            MODELS.register(name)(Family(name, schema, build))
            store_model_schema(name, schema)  # Hydra's ConfigStore: schema_model_<name>
        return build

    return add


def model_config(name: str, **values) -> ModelConfig:
    """The family's own config with the dataclass defaults, e.g. `model_config("dcgan", ndf=32)`.

    The YAML of a name may set other values than its dataclass (wgan_gp: `norm: layer`)."""
    return MODELS.get(name).schema(name=name, **values)


def build_models(cfg: ModelConfig, spec) -> tuple[Generator, Discriminator]:
    """Build (G, D) for `cfg.name` (the family's own config) sized by `spec` (a DataSpec); loads no weights.

    A conditional model needs a labelled dataset, and each family checks that the data fit it
    (`cfg.check(spec)`); both are checked here, where config and data are known.
    """
    family = MODELS.get(cfg.name)
    if not isinstance(cfg, family.schema):
        raise TypeError(f"model={cfg.name} is built from a {family.schema.__name__}, got a "
                        f"{type(cfg).__name__} (use ganrun.models.model_config)")
    if cfg.conditional and spec.num_classes < 2:
        raise UserError(
            f"model={cfg.name} is conditional but dataset={spec.name} has no class labels; "
            "choose a labelled dataset (fashion_mnist, mnist, cifar10, a folder with class "
            "subfolders) or an unconditional model"
        )
    cfg.check(spec)
    return family.build(cfg, spec)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
