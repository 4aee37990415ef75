"""Instance noise: Gaussian noise of std σ on everything D sees, reals and fakes (Sønderby et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass


import torch

from ganrun.losses.regularizers import REGULARIZERS, TORCH_DRAWS, Draws, Regularizer


@REGULARIZERS.register("instance_noise")
@dataclass(frozen=True)
class InstanceNoise(Regularizer):
    std: float  # σ

    @dataclass
    class Keys:
        instance_noise: float = 0.0  # std of Gaussian noise added to D's inputs; 0: off

    acts_in = "D_input"

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.instance_noise) if cfg.instance_noise > 0 else None

    def transform(self, x: torch.Tensor, draws: Draws = TORCH_DRAWS) -> torch.Tensor:
        return x + self.std * draws.randn_like(x)
