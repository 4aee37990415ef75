"""`ganrun sample`: a PNG grid (or latent interpolation strips) from a trained generator."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun import memory
from ganrun.commands.runs import load_run
from ganrun.commands.train import generate, pick_device, render
from ganrun.config.schema import SampleAppConfig
from ganrun.config.validate import validate
from ganrun.errors import UserError
from ganrun.outputs import check_target, write_image

FRAMES = 10  # frames per interpolation strip


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (N, D) at fractions t (T,) → (N, T, D)."""
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]  # (N, 1, 1)
    t = t[None, :, None]
    return (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / torch.sin(omega)


def sample(cfg: DictConfig) -> Path:
    c: SampleAppConfig = OmegaConf.to_object(cfg)
    validate(c)
    if c.n <= 0:
        raise UserError(f"n must be > 0, got {c.n}")
    if c.out:
        check_target(c.out, "out", c.overwrite, image=True)
    device = pick_device(c.device.name)
    run = load_run(c.checkpoint, device)
    G, spec = run.G, run.spec
    # the default name carries everything that changes the picture, so another seed never overwrites it
    name = (f"sample_{run.step:07d}_seed{c.seed}_n{c.n}" + (f"_label{c.label}" if c.label is not None else "")
            + ("_interp" if c.interpolate else "") + ".png")
    out = check_target(c.out or run.run_dir / "samples" / name, "out", c.overwrite, image=True)
    memory.require("n", c.n, 4 * G.latent_dim + 8 * math.prod(spec.shape), device, what="the samples")
    if c.label is not None and not G.num_classes:
        raise UserError(f"label={c.label} given but model={run.model_cfg.name} is not conditional")
    if c.label is not None and not 0 <= c.label < G.num_classes:
        raise UserError(f"label must be in 0..{G.num_classes - 1}, got {c.label}")
    gen = torch.Generator().manual_seed(c.seed)
    nrow = None
    if c.interpolate:
        rows = max(1, c.n // FRAMES)
        ends = torch.randn(2, rows, G.latent_dim, generator=gen)
        z = slerp(ends[0], ends[1], torch.linspace(0, 1, FRAMES)).reshape(-1, G.latent_dim)
        labels = torch.randint(max(G.num_classes, 1), (rows,), generator=gen).repeat_interleave(FRAMES)
        nrow = FRAMES
    else:
        z = torch.randn(c.n, G.latent_dim, generator=gen)
        labels = torch.arange(c.n) * max(G.num_classes, 1) // c.n  # one band per class
        if G.num_classes and c.label is None:
            nrow = max(1, c.n // G.num_classes)
    if c.label is not None:
        labels = torch.full_like(labels, c.label)
    labels = labels.to(device) if G.num_classes else None
    fakes = generate(G, z.to(device), labels)
    data = fakes if spec.is_image else _reference_points(run)
    img = render(fakes, spec, data, nrow)
    write_image(out, img)
    print(f"wrote {out} ({len(fakes)} samples from step {run.step:,} of {run.checkpoint_path})")
    return out


def _reference_points(run) -> torch.Tensor:
    from ganrun.data import build_dataset

    return build_dataset(run.dataset_cfg, split="test").data


def run(cfg: DictConfig) -> None:
    sample(cfg)
