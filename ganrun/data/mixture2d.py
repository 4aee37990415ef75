"""Generated 2-D Gaussian mixtures, the standard mode-collapse testbeds (PacGAN, VEEGAN).

ring8: 8 modes on the unit circle at angles 2πi/8, std 0.01.
grid25: 25 modes at {-4, -2, 0, 2, 4}², std 0.05.
The set is generated from a fixed seed (it is the data, not part of the run), so every run and
every evaluation sees the same points. Unlabelled: conditional models are refused.
"""

from __future__ import annotations

import math

import torch

from ganrun import memory
from ganrun.data.base import DATASETS, ArrayDataset, DataSpec

DATA_SEED = {"train": 0, "test": 1}


def ring8_centers() -> list[tuple[float, float]]:
    return [(math.cos(2 * math.pi * i / 8), math.sin(2 * math.pi * i / 8)) for i in range(8)]


def grid25_centers() -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)]


def sample_mixture(centers: torch.Tensor, std: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points (n, 2): a uniformly chosen centre plus N(0, std²) noise."""
    which = torch.randint(len(centers), (n,), generator=generator)
    return centers[which] + std * torch.randn(n, 2, generator=generator)


def _mixture(name: str, centers: list[tuple[float, float]], std: float, cfg, split: str) -> ArrayDataset:
    memory.require("dataset.num_points", cfg.num_points, 28, what="the generated points")  # randint int64 + 2 x randn f32
    gen = torch.Generator().manual_seed(DATA_SEED[split])
    points = sample_mixture(torch.tensor(centers), std, cfg.num_points, gen)
    spec = DataSpec(name=name, kind="points", shape=(2,), size=len(points),
                    centers=tuple(centers), mode_std=std)
    return ArrayDataset(data=points, labels=None, spec=spec, source=f"generated (seed {DATA_SEED[split]})")


@DATASETS.register("ring8")
def ring8(cfg, split: str) -> ArrayDataset:
    return _mixture("ring8", ring8_centers(), 0.01, cfg, split)


@DATASETS.register("grid25")
def grid25(cfg, split: str) -> ArrayDataset:
    return _mixture("grid25", grid25_centers(), 0.05, cfg, split)
