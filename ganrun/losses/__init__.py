"""Adversarial objectives and regularizers, selected by `loss=<name>` and its options.

`build_loss(cfg.loss)` returns a `LossSpec`: the objective's pure functions plus the weights of
the penalties and stabilizers. Everything here is pure tensor math (no `.item()`, no branching
on tensor values), so the training step that uses it can be captured as a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ganrun.errors import UserError

from ganrun.losses.objectives import OBJECTIVES, Objective
from ganrun.losses.penalties import gradient_penalty, r1_penalty

__all__ = ["OBJECTIVES", "Objective", "LossSpec", "build_loss", "check_discriminator", "gradient_penalty",
           "r1_penalty"]


@dataclass(frozen=True)
class LossSpec:
    objective: Objective
    real_label: float  # target for reals (label smoothing below 1)
    fake_label: float  # target for fakes (two-sided smoothing above 0)
    gp_weight: float  # λ; 0: off
    r1_gamma: float  # γ; 0: off
    r1_every: int  # steps between R1 evaluations
    instance_noise: float  # std; 0: off
    feature_matching: float  # weight; 0: off


def build_loss(cfg) -> LossSpec:
    """Objective and regularizer weights from a LossConfig; reads nothing else."""
    objective = OBJECTIVES.get(cfg.name)
    if not objective.uses_labels and (cfg.real_label != 1.0 or cfg.fake_label != 0.0):
        raise UserError(
            f"loss.real_label/loss.fake_label (label smoothing) have no effect with loss={cfg.name}; "
            "leave them at 1.0/0.0 or choose loss=non_saturating, minimax or least_squares"
        )
    return LossSpec(
        objective=objective,
        real_label=cfg.real_label,
        fake_label=cfg.fake_label,
        gp_weight=cfg.gp_weight,
        r1_gamma=cfg.r1_gamma,
        r1_every=cfg.r1_every,
        instance_noise=cfg.instance_noise,
        feature_matching=cfg.feature_matching,
    )


def check_discriminator(loss: LossSpec, D: nn.Module) -> None:
    """The gradient penalty is per sample; BatchNorm in D mixes the samples of a batch and breaks it."""
    if loss.gp_weight > 0 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()):
        raise UserError(
            "loss.gp_weight > 0 needs a discriminator without BatchNorm (it breaks the per-sample "
            "gradient penalty); set model.norm=layer or model.norm=none (model=wgan_gp uses layer)"
        )
