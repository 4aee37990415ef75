"""`ganrun sample`: a PNG grid (or latent interpolation strips) from a trained generator."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from ganrun.config.compose import to_typed
from ganrun.config.schema import SampleAppConfig
from ganrun.errors import UserError
from ganrun.observe.images import render, save_png
from ganrun.runtime import class_labels, generate, grid_rows, grid_size, pick_device, sample_inputs
from ganrun.train.loaded import load_run

FRAMES = 10  # frames per interpolation strip


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (N, D) at fractions t (T,) → (N, T, D)."""
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]  # (N, 1, 1)
    t = t[None, :, None]
    return (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / torch.sin(omega)


def sample(cfg: DictConfig) -> Path:
    c: SampleAppConfig = to_typed(cfg, SampleAppConfig)
    if c.n <= 0:
        raise UserError(f"n must be > 0, got {c.n}")
    device = pick_device(c.device.name)
    run = load_run(c.checkpoint, device)
    G, spec = run.G, run.spec
    if c.label is not None and not G.num_classes:
        raise UserError(f"label={c.label} given but model={run.model_cfg.name} is not conditional")
    if c.label is not None and not 0 <= c.label < G.num_classes:
        raise UserError(f"label must be in 0..{G.num_classes - 1}, got {c.label}")
    k = G.num_classes if c.label is None else 0  # one row per class, unless one class is asked for
    nrow = None
    if c.interpolate:
        gen = torch.Generator().manual_seed(c.seed)
        rows = max(1, c.n // FRAMES)
        ends = torch.randn(2, rows, G.latent_dim, generator=gen)
        z = slerp(ends[0], ends[1], torch.linspace(0, 1, FRAMES)).reshape(-1, G.latent_dim)
        labels = class_labels(rows, k).repeat_interleave(FRAMES) if k else None
        nrow = FRAMES
    else:
        n = grid_size(c.n, k) if spec.is_image else c.n
        if n != c.n:
            print(f"n={c.n} rounded to {n}: one row of {n // k} per class for the {k} classes of "
                  f"model={run.model_cfg.name}")
        z, labels = sample_inputs(n, G.latent_dim, k, c.seed)
        nrow = grid_rows(n, k) if spec.is_image else None
    if c.label is not None:
        labels = torch.full((len(z),), c.label, dtype=torch.long)
    fakes = generate(G, z, labels)
    img = render(fakes, None if spec.is_image else _reference_points(run), nrow)
    out = Path(c.out) if c.out else run.run_dir / "samples" / f"sample_{run.step:07d}.png"
    save_png(img, out)
    print(f"wrote {out} ({len(fakes)} samples from step {run.step:,} of {run.checkpoint_path})")
    return out


def _reference_points(run) -> torch.Tensor:
    from ganrun.data import build_dataset

    return build_dataset(run.dataset_cfg, split="test").data


def run(cfg: DictConfig) -> None:
    sample(cfg)
