"""Kernel Inception Distance (KID, Bińkowski et al. 2018) on float64 features.

KID is the squared maximum mean discrepancy (MMD²) between the two feature distributions under
the cubic polynomial kernel

    k(x, y) = (xᵀy / d + 1)³          x, y ∈ ℝᵈ

estimated without bias on random subsets of m samples from each set (X from real, Y from fake):

    MMD²ᵤ = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(m(m−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/m² Σ_{i,j} k(xᵢ, yⱼ)

The reported KID is the mean of MMD²ᵤ over `num_subsets` subsets, with the population standard
deviation (ddof=0) across subsets. This is the estimator of torch-fidelity's `metric_kid.py`
(mmd_est="unbiased"), and subsets are drawn the same way it draws them
(`numpy.random.RandomState(seed).choice(N, m, replace=False)`, real then fake, per subset), so
`kid_from_features(real, fake, seed=s)` equals torch-fidelity's
`kid_features_to_metric(real, fake, rng_seed=s, ...)` when N ≥ subset_size. Small unbiased
estimates can be slightly negative; that is valid and means "indistinguishable at this m".
"""

from __future__ import annotations

import numpy as np

from ganrun.errors import UserError
from ganrun.metrics._arrays import as_features


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (xᵀy / d + coef0)^degree for x (m, d), y (n, d) float64 → (m, n) float64."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD² from the three (m, m) kernel matrices (diagonals of k_xx, k_yy excluded)."""
    m = k_xx.shape[0]
    if m < 2 or k_xx.shape != (m, m) or k_xy.shape != (m, m) or k_yy.shape != (m, m):
        raise ValueError(f"mmd2_unbiased needs three (m, m) matrices with m ≥ 2; got {k_xx.shape}, {k_xy.shape}, {k_yy.shape}")
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid_from_features(real, fake, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID between real (N₁, d) and fake (N₂, d) features → (mean, std) of MMD²ᵤ over subsets.

    subset_size m is clamped to min(N₁, N₂); with m == N₁ == N₂ and num_subsets=1 the result is the
    deterministic full-set estimate (std 0). seed fixes which subsets are drawn.
    """
    real = as_features(real, "real features")
    fake = as_features(fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs num_subsets ≥ 1 and subset_size ≥ 2; got {num_subsets}, {subset_size}")
    n_real, n_fake = real.shape[0], fake.shape[0]
    m = min(subset_size, n_real, n_fake)
    if m < 2:
        raise UserError(f"KID needs at least 2 samples per set, got {n_real} real and {n_fake} generated; raise eval.num_samples")
    rng = np.random.RandomState(seed)  # legacy generator on purpose: same subsets as torch-fidelity
    mmds = np.empty(num_subsets, dtype=np.float64)
    for s in range(num_subsets):
        x = real[rng.choice(n_real, m, replace=False)]  # (m, d)
        y = fake[rng.choice(n_fake, m, replace=False)]  # (m, d)
        mmds[s] = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y))
    return float(mmds.mean()), float(mmds.std())
