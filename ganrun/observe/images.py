"""Render samples as images: grids for image data, scatter plots for 2-D points (no matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch


def image_grid(x: torch.Tensor, nrow: Optional[int] = None, padding: int = 2) -> np.ndarray:
    """Images in [-1, 1], (N, C, H, W) → one uint8 HWC RGB grid (grayscale repeated)."""
    from torchvision.utils import make_grid

    x = x.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    nrow = nrow or max(1, int(math.ceil(math.sqrt(len(x)))))
    grid = make_grid(x, nrow=nrow, padding=padding, pad_value=0.0)
    return grid.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def scatter_plot(samples: torch.Tensor, data: torch.Tensor, size: int = 384,
                 extent: Optional[float] = None) -> np.ndarray:
    """2-D samples (red) over data points (gray) → uint8 HWC RGB image with axes at 0."""
    samples = samples.detach().float().cpu().numpy()
    data = data.detach().float().cpu().numpy()
    if extent is None:
        extent = float(np.abs(data).max()) * 1.25 if len(data) else 1.0
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    center = size // 2
    img[center, :] = img[:, center] = (220, 220, 220)

    def to_px(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = ((p[:, 0] / extent + 1) / 2 * (size - 1)).round().astype(int)
        v = ((1 - (p[:, 1] / extent + 1) / 2) * (size - 1)).round().astype(int)
        keep = (u >= 0) & (u < size) & (v >= 0) & (v < size)
        return u[keep], v[keep]

    u, v = to_px(data)
    img[v, u] = (150, 150, 150)
    u, v = to_px(samples)
    for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2×2 dots
        img[np.clip(v + dv, 0, size - 1), np.clip(u + du, 0, size - 1)] = (220, 30, 30)
    return img


def save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def render(samples: torch.Tensor, reference: Optional[torch.Tensor] = None, nrow: Optional[int] = None) -> np.ndarray:
    """Samples as one picture: images (N, C, H, W) in [-1, 1] → a grid with `nrow` per row (None:
    square); 2-D points (N, 2) → a scatter plot over the `reference` points (the data)."""
    if samples.ndim == 4:
        return image_grid(samples, nrow=nrow)
    return scatter_plot(samples, samples if reference is None else reference)
