"""Adversarial objectives and regularizers, selected by `loss=<name>` and its options.

`build_loss(cfg.loss)` returns a `LossSpec`: the objective's pure functions plus the active
regularizers, each built by its own declaration (`ganrun.losses.regularizers`) from the config
fields it owns. Everything here is pure tensor math (no `.item()`, no branching on tensor
values), so the training step that uses it can be captured as a CUDA graph.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

from ganrun.config import schema
from ganrun.config.store import store_loss_schema
from ganrun.errors import UserError
from ganrun.losses.objectives import OBJECTIVES, Objective
from ganrun.losses.penalties import gradient_penalty, r1_penalty
from ganrun.losses.regularizers import PLACES, REGULARIZERS, DInputs, GInputs, Regularizer

__all__ = ["OBJECTIVES", "REGULARIZERS", "Objective", "Regularizer", "DInputs", "GInputs", "LossConfig", "LossSpec",
           "build_loss", "check_discriminator", "gradient_penalty", "r1_penalty"]

def _loss_schema() -> type:
    """The loss group's schema: the objective's `name` plus every regularizer's `Keys`, in registry order."""
    keys, owner = [], {}
    for name in REGULARIZERS.names():
        declared = REGULARIZERS.get(name).Keys
        types = typing.get_type_hints(declared)  # resolved in the declaring module
        for f in dataclasses.fields(declared):
            if f.name in owner:  # a bug in a declaration, caught on import
                raise TypeError(f"loss.{f.name} is declared by both {owner[f.name]} and {name}")
            owner[f.name] = name
            default = (dataclasses.field(default=f.default) if f.default is not dataclasses.MISSING
                       else dataclasses.field(default_factory=f.default_factory))  # list keys (diffaugment)
            keys.append((f.name, types[f.name], default))
    full = dataclasses.make_dataclass("LossConfig", keys, bases=(schema.LossConfig,))
    full.__module__ = __name__
    return full


LossConfig = _loss_schema()
store_loss_schema(LossConfig)

NORMS_THAT_MIX_SAMPLES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class LossSpec:
    objective: Objective
    terms: tuple[Regularizer, ...] = ()  # the active regularizers, in registry order

    def acting_in(self, place: str) -> tuple[Regularizer, ...]:
        assert place in PLACES, place
        return tuple(t for t in self.terms if t.acts_in == place)

    def get(self, name: str):
        """The active regularizer registered as `name`, or None when it is off."""
        return next((t for t in self.terms if t.name == name), None)

    @property
    def targets(self) -> tuple[float, float]:
        """(real, fake) targets of the objective: (1, 0) unless a `targets` term says otherwise."""
        for term in self.acting_in("targets"):
            return term.targets()
        return 1.0, 0.0

    @property
    def double_backward(self) -> bool:
        return any(t.double_backward for t in self.terms)

    def lazy(self) -> tuple[Regularizer, ...]:
        """Terms evaluated on some steps only (the host-side branches of the step)."""
        return tuple(t for t in self.terms if t.every > 1)

    @property
    def d_reg_every(self) -> int:
        """k of D's lazy regularization phase (the lazy D terms' interval); 1: no such phase."""
        intervals = {t.every for t in self.lazy() if t.acts_in == "D"}
        if len(intervals) > 1:  # one D_reg phase, one optimizer correction
            raise UserError("the lazy D regularizers must share one interval; got "
                            + ", ".join(f"loss.{t.key_names()[-1]}={t.every}" for t in self.lazy()))
        return intervals.pop() if intervals else 1


def build_loss(cfg) -> LossSpec:
    """Objective and active regularizers from a LossConfig; reads nothing else."""
    objective = OBJECTIVES.get(cfg.name)
    terms = []
    for name in REGULARIZERS.names():
        term = REGULARIZERS.get(name).from_config(cfg)
        if term is not None:
            term.check(objective)
            terms.append(term)
    return LossSpec(objective, tuple(terms))


def has_spectral_norm(D: nn.Module) -> bool:
    """Whether some layer of D is spectrally normalized (`nn.utils.parametrizations.spectral_norm`)."""
    return any("SpectralNorm" in type(p).__name__ for m in D.modules() if parametrize.is_parametrized(m)
               for plist in m.parametrizations.values() for p in plist)


def check_discriminator(loss: LossSpec, D: nn.Module) -> None:
    """What the loss needs of D: per-sample terms no BatchNorm; a Lipschitz objective a penalty or spectral norm."""
    per_sample = [t for t in loss.terms if t.per_sample]
    if per_sample and any(isinstance(m, NORMS_THAT_MIX_SAMPLES) for m in D.modules()):
        keys = ", ".join(f"loss.{t.key_names()[0]} > 0" for t in per_sample)
        raise UserError(
            f"{keys} needs a discriminator without BatchNorm (it breaks the per-sample "
            "gradient penalty); set model.norm=layer or model.norm=none (model=wgan_gp uses layer)"
        )
    if loss.objective.needs_lipschitz and not (any(t.makes_lipschitz for t in loss.terms) or has_spectral_norm(D)):
        keys = " or ".join(f"loss.{t.key_names()[0]} > 0" for n in REGULARIZERS.names()
                           if (t := REGULARIZERS.get(n)).makes_lipschitz)
        raise UserError(
            f"loss={loss.objective.name} needs a Lipschitz critic: set loss.gp_weight=10 (model=wgan_gp does), "
            f"model.spectral_norm=true, or another Lipschitz term ({keys})"
        )
    for t in loss.terms:
        if getattr(t, "images_only", False) and len(getattr(D, "in_shape", ())) != 3:
            raise UserError(f"loss.{t.key_names()[0]}={list(t.policy)} transforms images (N, C, H, W), but this D "
                            f"reads samples of shape {tuple(D.in_shape)}; set loss.{t.key_names()[0]}=[] for points")
