"""Label smoothing: D's targets for reals (one-sided: 0.9) and fakes (two-sided: 0.02 with 0.98)."""

from __future__ import annotations

from dataclasses import dataclass

from ganrun.errors import UserError
from ganrun.losses.regularizers import REGULARIZERS, Regularizer


@REGULARIZERS.register("label_smoothing")
@dataclass(frozen=True)
class LabelSmoothing(Regularizer):
    real: float
    fake: float

    @dataclass
    class Keys:
        real_label: float = 1.0  # target for real data (0.9: one-sided label smoothing)
        fake_label: float = 0.0  # target for fakes (0.02 with real 0.98: two-sided smoothing)

    acts_in = "targets"

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.real_label, cfg.fake_label) if (cfg.real_label, cfg.fake_label) != (1.0, 0.0) else None

    def check(self, objective) -> None:
        if not objective.uses_labels:
            raise UserError(
                f"loss.real_label/loss.fake_label (label smoothing) have no effect with loss={objective.name}; "
                "leave them at 1.0/0.0 or choose loss=non_saturating, minimax or least_squares"
            )

    def targets(self) -> tuple[float, float]:
        return self.real, self.fake
