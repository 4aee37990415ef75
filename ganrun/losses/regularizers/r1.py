"""R1 penalty γ/2·E[‖∇D(x)‖²] on reals (Mescheder et al. 2018), lazily every `r1_every` steps."""

from __future__ import annotations

from dataclasses import dataclass

from ganrun.losses.penalties import r1_penalty
from ganrun.losses.regularizers import REGULARIZERS, DInputs, Regularizer


@REGULARIZERS.register("r1")
@dataclass(frozen=True)
class R1(Regularizer):
    gamma: float  # γ
    interval: int  # steps between evaluations

    @dataclass
    class Keys:
        r1_gamma: float = 0.0  # γ of the R1 penalty on real data; 0: off
        r1_every: int = 1  # steps between R1 evaluations (lazy regularization); 1: every step

    acts_in = "D"
    stat = "D/r1"
    double_backward = True
    makes_lipschitz = True

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.r1_gamma, cfg.r1_every) if cfg.r1_gamma > 0 else None

    @property
    def every(self) -> int:
        return self.interval

    def penalty(self, ctx: DInputs):
        with ctx.autocast():
            r1 = r1_penalty(ctx.D, ctx.real, ctx.c_real).float().mean()
        # lazy regularization: scaled by the interval so the average strength is unchanged
        return (self.gamma / 2) * self.interval * r1, r1
