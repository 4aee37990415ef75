"""Mode metrics for 2-D Gaussian mixtures (ring / grid), the VEEGAN and PacGAN protocol.

The protocol (Srivastava et al. 2017, Lin et al. 2018) draws 2,500 samples from the generator and
assigns each to its nearest mode centre. With isotropic mode standard deviation σ:

    high quality   a sample whose distance to its nearest centre is < 3σ (strict, as in the
                   PacGAN code's `min_dis < dis_thre`, distance measured in units of σ)
    modes covered  modes that are the nearest centre of at least `min_count` (default 1)
                   high-quality samples
    reverse KL     KL(p ‖ u) in nats, p = histogram of the high-quality samples over the M modes,
                   u = uniform 1/M:  Σ_m p_m · log((p_m + ε) / (1/M)),  ε = 1e-10.
                   ε only guards the log; modes with p_m = 0 contribute 0 (0·log ε = 0), so the
                   value is the exact KL up to ~ε. Range [0, log M]: 0 when the high-quality
                   samples are spread evenly, log M when they all sit on one mode. With no
                   high-quality sample at all the histogram is undefined and the result is nan
                   (the two other metrics are then 0 and say what happened).
    mode spread    how wide the modes are, which the three above do not read (a G that puts every
                   sample on a mode centre scores 100% high quality): the RMS distance of the
                   high-quality samples to their centre over the RMS a sample of the mixture itself
                   has within 3σ, σ·sqrt(E[χ²_D | χ²_D < 9]) = σ·sqrt(D·F_{D+2}(9) / F_D(9)) with F_k
                   the χ²_k CDF (1.378σ in 2-D). 1 for data drawn from the mixture; < 1 when the
                   modes are tighter than the data's, > 1 when wider; nan with no high-quality sample.

Everything is numpy float64; the functions are pure.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

from ganrun.metrics._arrays import as_float64

HIGH_QUALITY_STDS = 3.0  # a sample is high quality within this many σ of its nearest mode
KL_EPS = 1e-10  # guards log(p) in reverse_kl


def assign_modes(samples, centers, std: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest mode of each sample and whether it is high quality.

    samples (N, 2), centers (M, 2), std > 0 → (nearest (N,) int64 in [0, M), high_quality (N,) bool).
    Ties go to the lower mode index. Any sample dimension works, not only 2.
    """
    nearest, dist = _nearest(samples, centers, std)
    return nearest, dist < HIGH_QUALITY_STDS * std


def _nearest(samples, centers, std: float) -> tuple[np.ndarray, np.ndarray]:
    """(nearest mode (N,) int64, distance to it (N,) float64; nan for non-finite samples)."""
    x = as_float64(samples, "samples", 2)
    c = as_float64(centers, "centers", 2)
    if x.shape[1] != c.shape[1] or c.shape[0] < 1:
        raise ValueError(f"samples {x.shape} and centers {c.shape} must be (N, D) and (M, D) with M ≥ 1")
    if not std > 0:
        raise ValueError(f"std must be > 0; got {std}")
    d2 = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)  # (N, M) squared distances
    nearest = d2.argmin(axis=1)
    dist = np.sqrt(d2[np.arange(x.shape[0]), nearest])  # (N,) non-finite samples: nan → not HQ
    return nearest.astype(np.int64), dist


def mode_histogram(samples, centers, std: float) -> np.ndarray:
    """(M,) int64: number of high-quality samples whose nearest mode is m."""
    nearest, hq = assign_modes(samples, centers, std)
    return np.bincount(nearest[hq], minlength=np.shape(centers)[0]).astype(np.int64)


def modes_covered(samples, centers, std: float, *, min_count: int = 1) -> int:
    """Number of modes with at least `min_count` high-quality samples assigned to them."""
    return int((mode_histogram(samples, centers, std) >= min_count).sum())


def high_quality_fraction(samples, centers, std: float) -> float:
    """Fraction of samples within 3σ of their nearest mode, in [0, 1]."""
    return float(assign_modes(samples, centers, std)[1].mean())


def reverse_kl(samples, centers, std: float) -> float:
    """KL(histogram of high-quality samples over modes ‖ uniform) in nats; nan if none is high quality."""
    return _kl_from_histogram(mode_histogram(samples, centers, std))


def mode_spread(samples, centers, std: float) -> float:
    """RMS distance of the high-quality samples to their mode centre, in units of the mixture's own
    (module doc): 1 for data from the mixture, < 1 for modes tighter than the data's; nan if none is HQ."""
    nearest, dist = _nearest(samples, centers, std)
    return _spread(dist, std, np.shape(centers)[1])


def _spread(dist: np.ndarray, std: float, dim: int) -> float:
    hq = dist < HIGH_QUALITY_STDS * std
    if not hq.any():
        return float("nan")
    cut = HIGH_QUALITY_STDS ** 2
    real_ms = std ** 2 * dim * chi2.cdf(cut, dim + 2) / chi2.cdf(cut, dim)  # E[r² | r < 3σ] of the mixture
    return float(np.sqrt(np.mean(dist[hq] ** 2) / real_ms))


def _kl_from_histogram(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts / total
    return float((p * np.log((p + KL_EPS) * counts.shape[0])).sum())


def mixture_metrics(samples, centers, std: float, *, min_count: int = 1) -> dict[str, float]:
    """All at once: {"modes_covered", "high_quality_fraction", "reverse_kl", "mode_spread"} (module doc).

    samples (N, 2) generated points (the protocol uses N = 2,500), centers (M, 2), std the mode σ.
    """
    nearest, dist = _nearest(samples, centers, std)
    hq = dist < HIGH_QUALITY_STDS * std
    counts = np.bincount(nearest[hq], minlength=np.shape(centers)[0])
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "high_quality_fraction": float(hq.mean()),
        "reverse_kl": _kl_from_histogram(counts),
        "mode_spread": _spread(dist, std, np.shape(centers)[1]),
    }
