"""Feature extraction: images → float64 features of any feature network, measured the same way.

Generated images are rounded to the 256 uint8 levels first (as if saved as 8-bit PNGs, the way
real images reach us), batches run in eval mode under no_grad with TF32 off, and features come
back as float64 numpy arrays for the pure metric functions in `ganrun.metrics`.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn


def to_signed_unit_range(images: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
    """Images (N, C, H, W) → float32 in [-1, 1].

    uint8 pixels p map to p/127.5 − 1. Float images must already be in [-1, 1]; with quantize=True
    (the default) they are first rounded to the nearest of the 256 uint8 levels, round((x+1)·127.5),
    clamped to [0, 255], so generated images are measured exactly as if they had been saved as
    8-bit PNGs, the way real images reach us.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [-1, 1]; got {images.dtype}")
    x = images.float()
    if quantize:
        x = x.add(1.0).mul_(127.5).add_(0.5).floor_().clamp_(0.0, 255.0).div_(127.5).sub_(1.0)
    return x


@contextlib.contextmanager
def no_tf32():
    """Run the body with TF32 off for CUDA matmuls and cuDNN convolutions; restore after.

    Features must not depend on whether the training code enabled TF32. Uses whichever TF32 API
    the process already uses (torch ≥ 2.9 refuses to mix the legacy `allow_tf32` flags with the
    newer `fp32_precision` settings).
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        saved = ("legacy", matmul.allow_tf32, cudnn.allow_tf32)
        matmul.allow_tf32, cudnn.allow_tf32 = False, False
    except RuntimeError:  # the process set the new API; stay with it
        saved = ("new", matmul.fp32_precision, cudnn.conv.fp32_precision)
        matmul.fp32_precision, cudnn.conv.fp32_precision = "ieee", "ieee"
    try:
        yield
    finally:
        if saved[0] == "legacy":
            matmul.allow_tf32, cudnn.allow_tf32 = saved[1], saved[2]
        else:
            matmul.fp32_precision, cudnn.conv.fp32_precision = saved[1], saved[2]


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _run_batches(model: nn.Module, images: torch.Tensor, batch_size: int, fn, quantize: bool) -> list[tuple[torch.Tensor, ...]]:
    """fn(model, x) on fixed-size batches of `images` (the last may be smaller), eval mode, no grad, no TF32."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1; got {batch_size}")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad(), no_tf32():
            for start in range(0, images.shape[0], batch_size):
                x = to_signed_unit_range(images[start : start + batch_size].to(device), quantize=quantize)
                out.append(tuple(t.to("cpu", torch.float64) for t in fn(model, x)))
    finally:
        model.train(was_training)
    return out


def extract(model: nn.Module, images: torch.Tensor, batch_size: int = 500, *, quantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Domain-classifier features and class probabilities of images at native resolution.

    images: (N, C, S, S), uint8 or float in [-1, 1], on any device (moved batch by batch to the
    model's device). Runs in eval mode under no_grad with TF32 off, in batches of `batch_size`.
    Returns (features (N, feature_dim) float64, probs (N, num_classes) float64, rows sum to 1),
    numpy arrays; probs are the softmax of the logits computed in float64.
    """
    def fn(m, x):
        f = m.features(x)
        return f, m.head(f)

    parts = _run_batches(model, images, batch_size, fn, quantize)
    if not parts:
        raise ValueError("extract: no images")
    feats = torch.cat([p[0] for p in parts])
    probs = torch.softmax(torch.cat([p[1] for p in parts]), dim=1)
    return feats.numpy(), probs.numpy()


def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 500, *, quantize: bool = True) -> np.ndarray:
    """Features (N, F) float64 of any feature network with a `features(x)` method taking (N, C, H, W)
    in [-1, 1] (DomainClassifier, FIDInceptionV3); same batching and precision rules as `extract`."""
    parts = _run_batches(model, images, batch_size, lambda m, x: (m.features(x),), quantize)
    if not parts:
        raise ValueError("extract_features: no images")
    return torch.cat([p[0] for p in parts]).numpy()


def predict_labels(model: nn.Module, images: torch.Tensor, batch_size: int = 500, *, quantize: bool = True) -> np.ndarray:
    """Arg-max class (N,) int64 of each image."""
    parts = _run_batches(model, images, batch_size, lambda m, x: (m(x).argmax(dim=1),), quantize)
    return torch.cat([p[0] for p in parts]).to(torch.int64).numpy()
