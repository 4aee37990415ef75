"""DiffAugment (Zhao et al. 2020): differentiable augmentation of D's real and fake inputs.

A D-input regularizer (`acts_in = "D_input"`, declared once below). `loss.diffaugment=[color,translation,cutout]`
applies the same policy to every image D sees, real
or fake, in D's updates and in G's update, so G's gradient flows back through the transform.
Each sample gets its own random draw. Pure tensor work: no `.item()`, no branching on tensor
values, static shapes (translation and cutout are gathers and masks of fixed size), so the step
stays capturable as a CUDA graph. Images are (N, C, H, W) in [-1, 1]; outputs keep shape and
dtype. The transforms follow the authors' reference code (mit-han-lab/data-efficient-gans,
DiffAugment_pytorch.py):

    brightness   x + (u - 0.5)                       u ~ U(0, 1) per sample
    saturation   (x - mean_c(x)) · 2u + mean_c(x)    mean over channels (a no-op on grayscale)
    contrast     (x - mean_chw(x)) · (u + 0.5) + mean_chw(x)
    translation  shift by up to ±ratio·size pixels in y and x, zero padding (ratio 1/8)
    cutout       zero one square of ratio·size per sample at a random centre (ratio 1/2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ganrun.errors import UserError
from ganrun.losses.regularizers import REGULARIZERS, TORCH_DRAWS, Draws, Regularizer

TRANSLATION_RATIO = 0.125  # the paper's translation range, a fraction of the image size
CUTOUT_RATIO = 0.5  # the paper's cutout square side, a fraction of the image size

Transform = Callable[[torch.Tensor, Draws], torch.Tensor]


def _u(x: torch.Tensor, draws: Draws) -> torch.Tensor:
    """One U(0, 1) draw per sample, shaped to broadcast over (C, H, W)."""
    return draws.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def _int(low: int, high: int, n: int, x: torch.Tensor, draws: Draws) -> torch.Tensor:
    """n integers in [low, high), shaped (n, 1, 1)."""
    return (draws.randint(high - low, n, device=x.device) + low).view(n, 1, 1)


def brightness(x: torch.Tensor, draws: Draws = TORCH_DRAWS) -> torch.Tensor:
    return x + (_u(x, draws) - 0.5)


def saturation(x: torch.Tensor, draws: Draws = TORCH_DRAWS) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_u(x, draws) * 2) + mean


def contrast(x: torch.Tensor, draws: Draws = TORCH_DRAWS) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_u(x, draws) + 0.5) + mean


def translation(x: torch.Tensor, draws: Draws = TORCH_DRAWS, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = _int(-sy, sy + 1, n, x, draws)
    tx = _int(-sx, sx + 1, n, x, draws)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    # source pixel of each output pixel in the zero-padded image (padding 1 on every side)
    y = torch.clamp(gy[None] + ty + 1, 0, h + 1)  # (N, H, W)
    xx = torch.clamp(gx[None] + tx + 1, 0, w + 1)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1])  # (N, C, H+2, W+2)
    flat = padded.flatten(2)  # (N, C, (H+2)(W+2))
    index = (y * (w + 2) + xx).flatten(1)[:, None, :].expand(-1, x.shape[1], -1)  # (N, C, H·W)
    return flat.gather(2, index).view_as(x)


def cutout(x: torch.Tensor, draws: Draws = TORCH_DRAWS, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = _int(0, h + (1 - ch % 2), n, x, draws)
    cx = _int(0, w + (1 - cw % 2), n, x, draws)
    gy = torch.arange(h, device=x.device)[None, :, None]  # (1, H, 1)
    gx = torch.arange(w, device=x.device)[None, None, :]  # (1, 1, W)
    inside = ((gy - cy + ch // 2) >= 0) & ((gy - cy + ch // 2) < ch) \
        & ((gx - cx + cw // 2) >= 0) & ((gx - cx + cw // 2) < cw)  # (N, H, W)
    return x * (~inside)[:, None].to(x.dtype)


POLICIES: dict[str, tuple[Transform, ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


class DiffAugment:
    """Callable: images (N, C, H, W) → augmented images, same shape and dtype.

    `policy` names transforms from POLICIES, applied in the given order (the paper's order is
    color, translation, cutout). An empty policy is the identity.
    """

    def __init__(self, policy: Sequence[str]) -> None:
        unknown = [p for p in policy if p not in POLICIES]
        if unknown:
            raise ValueError(f"unknown DiffAugment policy {unknown[0]!r} (choose from: {', '.join(POLICIES)})")
        self.policy = tuple(policy)
        self.transforms = tuple(t for p in self.policy for t in POLICIES[p])

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, x: torch.Tensor, draws: Draws = TORCH_DRAWS) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"DiffAugment needs images (N, C, H, W); got shape {tuple(x.shape)}")
        for t in self.transforms:
            x = t(x, draws)
        return x


@REGULARIZERS.register("diffaugment")
@dataclass(frozen=True)
class DiffAugmentInput(Regularizer):
    """`loss.diffaugment`: the DiffAugment policy on D's inputs, reals and fakes alike."""

    policy: tuple[str, ...]

    @dataclass
    class Keys:
        diffaugment: list[str] = field(default_factory=list)  # DiffAugment policy on D's inputs: color, translation, cutout; []: off

    acts_in = "D_input"
    images_only = True  # (N, C, H, W): refused for 2-D points by check_discriminator

    @classmethod
    def from_config(cls, cfg):
        unknown = [p for p in cfg.diffaugment if p not in POLICIES]
        if unknown:
            raise UserError(f"loss.diffaugment must list policies from {', '.join(POLICIES)}; got '{unknown[0]}'")
        return cls(tuple(cfg.diffaugment)) if cfg.diffaugment else None

    def transform(self, x: torch.Tensor, draws: Draws = TORCH_DRAWS) -> torch.Tensor:
        return DiffAugment(self.policy)(x, draws)
