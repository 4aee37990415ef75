"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

All four estimate the two distributions' supports with k-nearest-neighbour balls in feature space.
With real features xᵢ (i < N), fake features yⱼ (j < M), Euclidean distance d, and
r_k(xᵢ) = distance from xᵢ to its k-th nearest other real sample (r_k(yⱼ) likewise among fakes):

    precision = 1/M Σⱼ 1[∃i: d(xᵢ, yⱼ) < r_k(xᵢ)]        fakes inside the real manifold    (k = 3)
    recall    = 1/N Σᵢ 1[∃j: d(xᵢ, yⱼ) < r_k(yⱼ)]        reals inside the fake manifold    (k = 3)
    density   = 1/(kM) Σⱼ Σᵢ 1[d(xᵢ, yⱼ) < r_k(xᵢ)]      how many real balls hold each fake (k = 5)
    coverage  = 1/N Σᵢ 1[minⱼ d(xᵢ, yⱼ) < r_k(xᵢ)]       real balls that hold any fake      (k = 5)

The comparisons are strict and r_k is the (k+1)-th smallest entry of a row of the self-distance
matrix (its smallest is the point itself, at 0), exactly as the `prdc` package's `compute_prdc`
(NAVER, MIT) does; its results agree with ours to rounding.

Memory: no N×M matrix is ever held. Distances are computed in float64 row blocks of at most
`block_bytes` (default 128 MiB), with ‖x−y‖² = ‖x‖² + ‖y‖² − 2xᵀy (clamped at 0), and each block
is reduced to the per-row radii or per-row/per-column hit statistics before the next one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ganrun.errors import UserError
from ganrun.metrics._arrays import as_features

BLOCK_BYTES = 128 * 2**20  # float64 distance block size; 10k × 10k runs in ~8 blocks per matrix


def _row_blocks(n_rows: int, n_cols: int, block_bytes: int):
    """Slices over range(n_rows) whose (rows × n_cols) float64 block fits in block_bytes."""
    rows = max(1, block_bytes // (8 * max(n_cols, 1)))
    for start in range(0, n_rows, rows):
        yield slice(start, min(start + rows, n_rows))


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", x, x)


def _distances(x: np.ndarray, x_sq: np.ndarray, y: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(x), len(y)) float64 via ‖x‖² + ‖y‖² − 2xᵀy, clamped at 0."""
    d2 = x @ y.T
    d2 *= -2.0
    d2 += x_sq[:, None]
    d2 += y_sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def nearest_neighbour_radii(x, ks: Sequence[int], *, block_bytes: int = BLOCK_BYTES) -> dict[int, np.ndarray]:
    """For each k in ks: (N,) float64 distance from every row of x (N, d) to its k-th nearest other row.

    Needs N ≥ max(ks) + 1. Self-distances are set to exactly 0 (as scikit-learn does for X vs X).
    """
    x = as_features(x, "features")
    n = x.shape[0]
    ks = sorted(set(int(k) for k in ks))
    if ks[0] < 1:
        raise ValueError(f"nearest-neighbour k must be ≥ 1; got {ks}")
    if n <= ks[-1]:
        raise UserError(f"{ks[-1]}-nearest-neighbour metrics need at least {ks[-1] + 1} samples per set, got {n}; raise eval.num_samples")
    sq = _sq_norms(x)
    radii = {k: np.empty(n, dtype=np.float64) for k in ks}
    for rows in _row_blocks(n, n, block_bytes):
        d = _distances(x[rows], sq[rows], x, sq)  # (rows, N)
        idx = np.arange(rows.start, rows.stop)
        d[idx - rows.start, idx] = 0.0
        d = np.partition(d, ks, axis=1)  # column k holds the (k+1)-th smallest, self included
        for k in ks:
            radii[k][rows] = d[:, k]
    return radii


def prdc_from_features(real, fake, *, pr_k: int = 3, dc_k: int = 5, block_bytes: int = BLOCK_BYTES) -> dict[str, float]:
    """Precision and recall with k=pr_k, density and coverage with k=dc_k, in one pass.

    real: (N, d), fake: (M, d), any float dtype; N, M > max(pr_k, dc_k).
    Returns {"precision", "recall", "density", "coverage"} as Python floats; precision, recall and
    coverage lie in [0, 1]; density is ≥ 0 (1 on average when fake ~ real, can exceed 1).
    """
    real = as_features(real, "real features")
    fake = as_features(fake, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    r_real = nearest_neighbour_radii(real, (pr_k, dc_k), block_bytes=block_bytes)
    r_fake = nearest_neighbour_radii(fake, (pr_k,), block_bytes=block_bytes)[pr_k]  # (M,)
    n, m = real.shape[0], fake.shape[0]
    real_sq, fake_sq = _sq_norms(real), _sq_norms(fake)
    fake_in_real = np.zeros(m, dtype=bool)  # precision: fake j inside some real pr_k-ball
    balls_per_fake = np.zeros(m, dtype=np.int64)  # density: real dc_k-balls that hold fake j
    real_in_fake = np.empty(n, dtype=bool)  # recall: real i inside some fake pr_k-ball
    real_covered = np.empty(n, dtype=bool)  # coverage: real dc_k-ball i holds some fake
    for rows in _row_blocks(n, m, block_bytes):
        d = _distances(real[rows], real_sq[rows], fake, fake_sq)  # (rows, M)
        fake_in_real |= (d < r_real[pr_k][rows, None]).any(axis=0)
        balls_per_fake += (d < r_real[dc_k][rows, None]).sum(axis=0)
        real_in_fake[rows] = (d < r_fake[None, :]).any(axis=1)
        real_covered[rows] = d.min(axis=1) < r_real[dc_k][rows]
    return {
        "precision": float(fake_in_real.mean()),
        "recall": float(real_in_fake.mean()),
        "density": float(balls_per_fake.sum() / (dc_k * m)),
        "coverage": float(real_covered.mean()),
    }


def precision_recall(real, fake, *, nearest_k: int = 3, block_bytes: int = BLOCK_BYTES) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) → {"precision", "recall"}."""
    out = prdc_from_features(real, fake, pr_k=nearest_k, dc_k=nearest_k, block_bytes=block_bytes)
    return {"precision": out["precision"], "recall": out["recall"]}


def density_coverage(real, fake, *, nearest_k: int = 5, block_bytes: int = BLOCK_BYTES) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020) → {"density", "coverage"}."""
    out = prdc_from_features(real, fake, pr_k=nearest_k, dc_k=nearest_k, block_bytes=block_bytes)
    return {"density": out["density"], "coverage": out["coverage"]}
