"""WGAN-GP's gradient penalty λ·E[(‖∇D(x̂)‖₂ − 1)²] on interpolates (Gulrajani et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass

from ganrun.losses.penalties import gradient_penalty
from ganrun.losses.regularizers import REGULARIZERS, DInputs, Regularizer


@REGULARIZERS.register("gradient_penalty")
@dataclass(frozen=True)
class GradientPenalty(Regularizer):
    weight: float  # λ

    @dataclass
    class Keys:
        gp_weight: float = 0.0  # λ of the gradient penalty on interpolates; 0: off

    acts_in = "D"
    stat = "D/gp"
    per_sample = True
    double_backward = True
    makes_lipschitz = True

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.gp_weight) if cfg.gp_weight > 0 else None

    def penalty(self, ctx: DInputs):
        # interpolates within one class for conditional D (fakes take the reals' labels)
        with ctx.autocast():
            gp = gradient_penalty(ctx.D, ctx.real, ctx.fake.float(), ctx.c_real).float().mean()
        return self.weight * gp, gp
