"""Mode seeking (Mao et al. 2019, MSGAN): w / (mean|G(z₁, c) − G(z₂, c)| / mean|z₁ − z₂| + ε), in G's loss.

A G that maps different z to the same image (a conditional G that draws one image per class,
ignoring z) makes the ratio small and the term large; G lowers it by keeping its samples apart in
proportion to their latents. The G phase pairs its batch for this term (`pairs_labels`): the
second half takes the first half's labels, so each pair (z₁ in the first half, z₂ at the same
place in the second) differs in z alone. Both means run over the whole batch, as in MSGAN's code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganrun.losses.regularizers import REGULARIZERS, GInputs, Regularizer

EPS = 1e-5  # MSGAN's ε: the term's ceiling (1/ε) when G ignores z entirely


@REGULARIZERS.register("mode_seeking")
@dataclass(frozen=True)
class ModeSeeking(Regularizer):
    weight: float

    @dataclass
    class Keys:
        mode_seeking: float = 0.0  # weight of the mode-seeking G term (MSGAN): fakes apart as their z; 0: off

    acts_in = "G"
    stat = "loss/mode_seeking"
    pairs_labels = True

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.mode_seeking) if cfg.mode_seeking > 0 else None

    def penalty(self, ctx: GInputs):
        half = ctx.fake.shape[0] // 2
        fake, z = ctx.fake.float(), ctx.z.float()
        apart = (fake[:half] - fake[half:2 * half]).abs().mean() / (z[:half] - z[half:2 * half]).abs().mean()
        term = 1.0 / (apart + EPS)
        return self.weight * term, term
