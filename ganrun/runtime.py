"""What every command shares: device choice, seeding, the generator's inputs and `generate`.

One label layout for every sample a conditional generator draws (sample grids during training,
`ganrun sample`, the eval grid, the samples metrics score): `class_labels(n, k)`, class-major
bands, `[0]*n/k + [1]*n/k + ...`. A grid of n samples from a conditional generator is rounded
down to a multiple of k (at least k) and drawn one row per class, so row r shows class r.
"""

from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch

from ganrun.data import DataSpec
from ganrun.errors import UserError

SCATTER_SAMPLES = 2500  # points in the 2-D scatter plots (the PacGAN/VEEGAN sample size)


def pick_device(name: str) -> torch.device:
    """`device.name` (auto, cpu, cuda, cuda:N) → a torch device; UserError when CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def set_cpu_threads(device: torch.device, threads: Optional[int]) -> None:
    """`device.cpu_threads`: torch's intra-op threads for a CPU run (None: leave torch's default).
    Small nets such as the 2-D mixtures' 3 x 128 MLP gain nothing from more threads, and on a shared
    machine extra threads mostly wait for each other (configs/dataset_model/ sets 1 for them)."""
    if device.type == "cpu" and threads is not None:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def class_labels(n: int, num_classes: int) -> torch.Tensor:
    """(n,) long class-major bands: sample i gets class i·k // n (equal bands when k divides n)."""
    return torch.arange(n) * num_classes // n


def grid_size(n: int, num_classes: int) -> int:
    """Samples in a grid of about n: a multiple of the classes (at least one each) when conditional."""
    return num_classes * max(1, n // num_classes) if num_classes else n


def sample_inputs(n: int, latent_dim: int, num_classes: int, seed: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """z (n, latent_dim) from a generator seeded with `seed` (the global RNG untouched), and the
    labels (n,) in the one layout (None when unconditional); both on the CPU."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, latent_dim, generator=gen)
    return z, class_labels(n, num_classes) if num_classes else None


def grid_rows(n: int, num_classes: int) -> Optional[int]:
    """Images per row of a grid of n samples: one row per class when conditional; None (square) otherwise."""
    return n // num_classes if num_classes else None


def fixed_inputs(G, spec: DataSpec, n: int, seed: int, device: torch.device):
    """The training sample grid's noise and labels (one row per class), stored in every checkpoint."""
    n = grid_size(n, G.num_classes) if spec.is_image else grid_size(SCATTER_SAMPLES, G.num_classes)
    z, c = sample_inputs(n, G.latent_dim, G.num_classes, seed + 1)
    return z.to(device), None if c is None else c.to(device)


@torch.no_grad()
def generate(G: torch.nn.Module, z: torch.Tensor, c: Optional[torch.Tensor], batch: int = 1000,
             to: Optional[torch.device] = None) -> torch.Tensor:
    """G(z, c) in eval mode, `batch` rows at a time moved to G's device; float32 on `to` (default:
    G's device; each batch is moved as it comes, so many samples need not fit on the GPU at once).

    G's train/eval mode is restored afterwards; G is not otherwise modified.
    """
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        return torch.cat([G(z[i : i + batch].to(device), None if c is None else c[i : i + batch].to(device))
                          .float().to(to or device) for i in range(0, len(z), batch)])
    finally:
        G.train(was_training)
