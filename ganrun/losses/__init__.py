"""Adversarial objectives and regularizers, selected by `loss=<name>` and its options.

`build_loss(cfg.loss)` returns a `LossSpec`: the objective's pure functions plus the weights of
the penalties and stabilizers. Everything here is pure tensor math (no `.item()`, no branching
on tensor values), so the training step that uses it can be captured as a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganrun.losses.objectives import OBJECTIVES, Objective
from ganrun.losses.penalties import gradient_penalty, r1_penalty

__all__ = ["OBJECTIVES", "Objective", "LossSpec", "build_loss", "gradient_penalty", "r1_penalty"]


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
    return LossSpec(
        objective=OBJECTIVES.get(cfg.name),
        real_label=cfg.real_label,
        fake_label=cfg.fake_label,
        gp_weight=cfg.gp_weight,
        r1_gamma=cfg.r1_gamma,
        r1_every=cfg.r1_every,
        instance_noise=cfg.instance_noise,
        feature_matching=cfg.feature_matching,
    )
