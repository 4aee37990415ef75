"""Fréchet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017).

Everything here is numpy float64. Inputs may be numpy arrays or torch tensors (any dtype, any
device); they are copied to CPU float64 first.

    FID = ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2·tr((Σ₁Σ₂)^½)

The trace of the matrix square root is computed from symmetric eigendecompositions, never with a
general (Schur-based) `sqrtm`: Σ₁Σ₂ = Σ₁^½ · (Σ₁^½ Σ₂ Σ₁^½) · Σ₁^-½ is similar to the symmetric
positive semi-definite matrix M = Σ₁^½ Σ₂ Σ₁^½, so both have the same eigenvalues λᵢ ≥ 0 and

    tr((Σ₁Σ₂)^½) = Σᵢ √λᵢ(M).

This is exact up to rounding, stays real, and needs no "add eps to the diagonal" fallback.
"""

from __future__ import annotations

import numpy as np

from ganrun.errors import UserError
from ganrun.metrics._arrays import as_features, to_float64

MIN_SAMPLES_PER_DIM = 5  # FID needs N ≥ 5·d samples per set for a usable d×d covariance


def feature_statistics(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set.

    feats: (N, d), N ≥ 2, any float dtype.
    Returns (mu, sigma): mu (d,) float64 = (1/N) Σₙ xₙ;
    sigma (d, d) float64 = (1/(N−1)) Σₙ (xₙ − mu)(xₙ − mu)ᵀ (ddof=1, as numpy.cov), exactly symmetric.
    """
    x = as_features(feats, "feats")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"feature_statistics needs at least 2 samples; got {n}")
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = (xc.T @ xc) / (n - 1)
    sigma = 0.5 * (sigma + sigma.T)  # remove BLAS rounding asymmetry
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root S = V·diag(√max(w, 0))·Vᵀ of a symmetric PSD matrix (d, d)."""
    w, v = np.linalg.eigh(sigma)
    w = np.clip(w, 0.0, None)  # tiny negative eigenvalues are rounding noise
    return (v * np.sqrt(w)) @ v.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """tr((Σ₁Σ₂)^½) for symmetric PSD Σ₁, Σ₂ of shape (d, d), as Σᵢ √λᵢ(Σ₁^½ Σ₂ Σ₁^½)."""
    s1 = _psd_sqrt(to_float64(sigma1))
    m = s1 @ to_float64(sigma2) @ s1
    m = 0.5 * (m + m.T)
    lam = np.clip(np.linalg.eigvalsh(m), 0.0, None)
    return float(np.sqrt(lam).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu1, mu2: (d,); sigma1, sigma2: (d, d) symmetric PSD. Computed in float64:

        ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2·Σᵢ √λᵢ(Σ₁^½ Σ₂ Σ₁^½)

    Returns a Python float (not clamped: identical inputs give 0 up to rounding, ~1e-12·tr Σ,
    possibly a tiny negative). Non-finite inputs (e.g. features of a diverged generator) give nan.
    """
    mu1, mu2 = np.atleast_1d(to_float64(mu1)), np.atleast_1d(to_float64(mu2))
    sigma1, sigma2 = np.atleast_2d(to_float64(sigma1)), np.atleast_2d(to_float64(sigma2))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: shapes do not match: mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
            f"mu2 {mu2.shape}, sigma2 {sigma2.shape}"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        return float("nan")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def min_fid_samples(dim: int) -> int:
    """The fewest samples per set `fid_from_features` accepts for d-dimensional features: 5·d."""
    return MIN_SAMPLES_PER_DIM * int(dim)


def fid_from_features(real, fake) -> float:
    """FID between two feature sets real (N₁, d) and fake (N₂, d), in float64.

    Refuses (UserError) when either set has fewer than 5·d samples: below that the d×d covariance
    estimate is so noisy (or singular) that the number is dominated by its sample-size bias.
    """
    real = as_features(real, "real features")
    fake = as_features(fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    d = real.shape[1]
    need = min_fid_samples(d)
    if real.shape[0] < need or fake.shape[0] < need:
        raise UserError(
            f"FID on {d}-d features needs at least {need} samples per set ({MIN_SAMPLES_PER_DIM} per "
            f"feature dimension), got {real.shape[0]} real and {fake.shape[0]} generated; "
            f"set eval.num_samples={need} or more"
        )
    mu1, sigma1 = feature_statistics(real)
    mu2, sigma2 = feature_statistics(fake)
    return frechet_distance(mu1, sigma1, mu2, sigma2)
