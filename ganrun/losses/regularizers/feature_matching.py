"""Feature matching (Salimans et al. 2016): w·‖E[f(x)] − E[f(G(z))]‖² on D's last hidden features, in G's loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganrun.losses.regularizers import REGULARIZERS, GInputs, Regularizer


@REGULARIZERS.register("feature_matching")
@dataclass(frozen=True)
class FeatureMatching(Regularizer):
    weight: float

    @dataclass
    class Keys:
        feature_matching: float = 0.0  # weight of the feature-matching G loss; 0: off

    acts_in = "G"
    stat = "loss/feature_matching"

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.feature_matching) if cfg.feature_matching > 0 else None

    def penalty(self, ctx: GInputs):
        with torch.no_grad(), ctx.autocast():
            _, real_features = ctx.D_features(ctx.d_input(ctx.real), ctx.c_real)
        fm = F.mse_loss(ctx.fake_features.float().mean(0), real_features.float().mean(0))
        return self.weight * fm, fm
