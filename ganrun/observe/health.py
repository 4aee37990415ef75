"""Training health: the warnings the GAN literature's hard-won advice calls for.

- D wins outright: its accuracy on reals and fakes (`D/acc_real`, `D/acc_fake`, logged by the
  objectives that classify: the BCE losses, least squares and hinge; not by a Wasserstein critic,
  whose sign means nothing) stays near 100% for several log intervals, so G's gradients vanish
  (try label smoothing, instance noise, a lower D lr or spectral norm).
- Sample diversity collapses: the mean pairwise feature distance of a fixed batch of samples
  falls far below that of real data (mode collapse; try minibatch std or feature matching; a
  conditional G that has learned to ignore z is pointed to mode seeking first).
NaN/Inf losses stop the run in the loop itself. Each warning is given once per episode: it
re-arms when the condition clears.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Health:
    d_acc_threshold: float = 0.99  # both accuracies above this count as "D wins"
    d_acc_patience: int = 3  # consecutive log intervals before warning
    diversity_floor: float = 0.25  # fake/real mean pairwise distance ratio below this warns
    conditional: bool = False  # a conditional G: its collapse is within each class, mode seeking undoes it
    _d_streak: int = 0
    _d_warned: bool = False
    _div_warned: bool = False

    def check_scalars(self, values: dict[str, float]) -> list[str]:
        real, fake = values.get("D/acc_real"), values.get("D/acc_fake")
        if real is None or fake is None:
            return []
        if real > self.d_acc_threshold and fake > self.d_acc_threshold:
            self._d_streak += 1
        else:
            self._d_streak, self._d_warned = 0, False
        if self._d_streak >= self.d_acc_patience and not self._d_warned:
            self._d_warned = True
            return [f"the discriminator classifies {real:.1%} of reals and {fake:.1%} of fakes correctly for "
                    f"{self._d_streak} log intervals: G's gradients are vanishing (try loss.real_label=0.9, "
                    "loss.instance_noise, a lower optimizer.d_lr or model.spectral_norm=true)"]
        return []

    def check_metrics(self, results: dict[str, float]) -> list[str]:
        ratio = next((v for k, v in results.items() if k.startswith("diversity_ratio")), None)
        if ratio is None:
            return []
        if ratio < self.diversity_floor:
            if not self._div_warned:
                self._div_warned = True
                hint = ("a conditional G that ignores z; try loss.mode_seeking=1.0 or model.minibatch_std=true"
                        if self.conditional else "try model.minibatch_std=true or loss.feature_matching=1.0")
                return [f"sample diversity collapsed: mean pairwise feature distance is {ratio:.2f}× that of real "
                        f"data (mode collapse: {hint})"]
        else:
            self._div_warned = False
        return []
