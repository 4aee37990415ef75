"""Regularizers and stabilizers, each declared once in its own module of this package.

A regularizer is a frozen dataclass registered in `REGULARIZERS` under its name. The class says
- `Keys`: a dataclass of the `loss.*` config keys it reads, typed, commented and defaulted (off)
  beside it; `ganrun.losses.LossConfig`, the loss group's schema, is the objective's `name` plus
  every regularizer's keys. Their YAML defaults are in `configs/loss/regularizers/default.yaml`,
  which every loss option includes; `key_names()` lists them;
- `acts_in`: where the step applies it:
    `D_input`  transforms what D sees, reals and fakes alike (`transform(x, draws)`): instance
               noise, DiffAugment;
    `targets`  the objective's real/fake targets (`targets()`): label smoothing;
    `D`        adds a term to D's loss (`penalty(ctx: DInputs)`): gradient penalty, R1;
    `G`        adds a term to G's loss (`penalty(ctx: GInputs)`): feature matching, mode seeking;
               `pairs_labels`: the G phase's second half of the batch takes the first half's labels;
- random draws go through what the step passes (`transform`'s `draws`, `DInputs.rand`), so that
  several ranks draw one global batch's values and keep their slices (ganrun.train.distributed's
  `Dist` has the methods of `Draws`);
- `stat`: the name its raw (unweighted) value is logged under, or None;
- `every`: steps between evaluations (lazy regularization; the term scales itself);
- what it needs of D (`per_sample`: no BatchNorm; `double_backward`) and whether it keeps a
  critic Lipschitz (`makes_lipschitz`, read where an objective needs one).
`from_config(cfg)` returns the active instance, or None when its weight is 0 (off).

Adding one: a module here with `@REGULARIZERS.register("<name>")` and its `Keys`, and its
default(s) in the one YAML above. Nothing else reads its keys or needs editing.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, ClassVar, ContextManager, Optional

import torch
from torch import nn

from ganrun.registry import Registry

PLACES = ("D_input", "targets", "D", "G")


class Draws:
    """The random draws of a D-input transform, per sample of this process's batch: torch's own.
    On several ranks the step passes its `Dist`, whose methods of the same names return this rank's
    slice of one draw for the global batch."""

    def rand(self, n: int, *shape: int, device: torch.device, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        return torch.rand(n, *shape, device=device, dtype=dtype)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(x)

    def randint(self, high: int, n: int, device: torch.device) -> torch.Tensor:
        """n integers in [0, high)."""
        return torch.randint(high, (n,), device=device)


TORCH_DRAWS = Draws()


@dataclass(frozen=True)
class DInputs:
    """What a D-phase term sees: D, the batch's reals and (G-frozen) fakes, their labels."""

    D: nn.Module
    real: torch.Tensor  # (N, ...) in the model range, flipped, before any D-input transform
    fake: torch.Tensor
    c_real: Optional[torch.Tensor]
    c_fake: Optional[torch.Tensor]
    autocast: Callable[[], ContextManager]
    rand: Callable[..., torch.Tensor] = None  # rand(n, *shape, device=, dtype=): U(0, 1) draws; None: torch.rand

    def uniform(self, n: int, *shape: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if self.rand is None:
            return torch.rand(n, *shape, device=device, dtype=dtype)
        return self.rand(n, *shape, device=device, dtype=dtype)


@dataclass(frozen=True)
class GInputs:
    """What a G-phase term sees: the fakes, their z and D's features of them, and the last D batch's reals."""

    D_features: Callable  # (x, c) -> (logits, features), possibly compiled
    fake_features: torch.Tensor  # (N, F)
    real: torch.Tensor
    c_real: Optional[torch.Tensor]
    d_input: Callable[[torch.Tensor], torch.Tensor]  # the D-input transforms
    autocast: Callable[[], ContextManager]
    fake: Optional[torch.Tensor] = None  # (N, ...) G's samples of this phase, before the D-input transforms
    z: Optional[torch.Tensor] = None  # (N, latent) their latents


class Regularizer:
    """Base of the declared regularizers; subclasses are frozen dataclasses of their settings."""

    Keys: ClassVar[type]  # dataclass of the loss.* keys it reads (name: type = default  # comment)
    acts_in: ClassVar[str] = "D"
    stat: ClassVar[Optional[str]] = None
    per_sample: ClassVar[bool] = False  # a per-sample term: D must not mix samples (BatchNorm)
    double_backward: ClassVar[bool] = False  # differentiates through ∇ₓD (no compiled D)
    makes_lipschitz: ClassVar[bool] = False  # keeps a critic Lipschitz (what wasserstein needs)
    pairs_labels: ClassVar[bool] = False  # a G term comparing fakes of one label: the G batch's halves share labels

    @classmethod
    def key_names(cls) -> tuple[str, ...]:
        """The `loss.*` keys this regularizer reads, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls.Keys))

    @property
    def name(self) -> str:
        return next(n for n in REGULARIZERS.names() if REGULARIZERS.get(n) is type(self))

    @property
    def every(self) -> int:
        return 1

    def due(self, step_index: int) -> bool:
        """Whether the term runs at this (host-side) step: a branch on the counter, never a tensor."""
        return step_index % self.every == 0

    @classmethod
    def from_config(cls, cfg) -> Optional["Regularizer"]:
        raise NotImplementedError

    def check(self, objective) -> None:
        """Raise UserError when this term makes no sense with `objective`."""

    # acts_in "D" / "G": (weighted term added to the loss, raw value for `stat`)
    def penalty(self, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    # acts_in "D_input"
    def transform(self, x: torch.Tensor, draws: Draws = TORCH_DRAWS) -> torch.Tensor:
        raise NotImplementedError

    # acts_in "targets": (real target, fake target)
    def targets(self) -> tuple[float, float]:
        raise NotImplementedError


REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")


def discover() -> None:
    """Import every module of this package: each registers its regularizer."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


discover()
