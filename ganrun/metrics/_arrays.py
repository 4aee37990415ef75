"""Input coercion shared by the metric functions: anything array-like → numpy float64."""

from __future__ import annotations

import numpy as np
import torch


def to_float64(x) -> np.ndarray:
    """`x` (numpy array, torch tensor on any device, scalar or nested lists) as a float64 numpy array."""
    if torch.is_tensor(x):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def as_float64(x, name: str, ndim: int) -> np.ndarray:
    """`to_float64(x)`, raising ValueError (naming the argument) unless it has `ndim` dimensions."""
    a = to_float64(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {a.shape}")
    return a


def as_features(x, name: str = "features") -> np.ndarray:
    """Features as a float64 array of shape (N, d) with N ≥ 1 and d ≥ 1."""
    a = as_float64(x, name, 2)
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be (N, d) with N, d ≥ 1; got shape {a.shape}")
    return a


def as_labels(x, name: str) -> np.ndarray:
    """Integer class labels as an int64 array of shape (N,)."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be (N,) class indices; got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices; got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)
