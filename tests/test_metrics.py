"""Metric functions against the reference packages and hand-computed values.

References (test extras): pytorch-fid 0.3.0 (FID), torch-fidelity 0.4.0 (KID, Inception score
formula), prdc 0.2 (precision/recall/density/coverage, needs scikit-learn).
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch

from ganrun.errors import UserError
from ganrun.metrics import (
    class_histogram,
    classifier_score,
    conditional_accuracy,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    high_quality_fraction,
    kid_from_features,
    kl_to_uniform,
    metric_name,
    mixture_metrics,
    modes_covered,
    prdc_from_features,
    reverse_kl,
)
from ganrun.metrics.kid import mmd2_unbiased, polynomial_kernel
from ganrun.metrics.prdc import nearest_neighbour_radii


def correlated(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """(n, d) samples of a random non-diagonal Gaussian (mean `shift`)."""
    mix = rng.normal(size=(d, d)) / math.sqrt(d) + np.eye(d)
    return rng.normal(size=(n, d)) @ mix + shift


# ------------------------------------------------------------------------------------------ FID


def test_feature_statistics_is_mean_and_unbiased_covariance():
    x = correlated(np.random.default_rng(0), 50, 4)
    mu, sigma = feature_statistics(torch.from_numpy(x).float())  # tensors and float32 accepted
    x32 = x.astype(np.float32).astype(np.float64)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x32, rowvar=False, ddof=1), rtol=1e-12)
    assert np.array_equal(sigma, sigma.T)


@pytest.mark.parametrize("d,shift", [(16, 0.3), (64, 1.0)])
def test_fid_matches_pytorch_fid(d, shift):
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(d)
    real, fake = correlated(rng, 8 * d, d), correlated(rng, 8 * d, d, shift)
    mu1, s1 = np.mean(real, 0), np.cov(real, rowvar=False)  # pytorch-fid's own statistics
    mu2, s2 = np.mean(fake, 0), np.cov(fake, rowvar=False)
    ref = calculate_frechet_distance(mu1, s1, mu2, s2)
    ours = fid_from_features(real, fake)
    assert ref > 1.0
    assert abs(ours - ref) / ref <= 1e-6
    assert abs(frechet_distance(mu1, s1, mu2, s2) - ref) / ref <= 1e-6


def test_fid_closed_form_for_diagonal_covariances():
    # FID = ‖μ₁−μ₂‖² + Σᵢ (√a_i − √b_i)² for Σ₁ = diag(a), Σ₂ = diag(b)
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3.0, 10), rng.uniform(0.1, 3.0, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_of_a_set_with_itself_is_zero():
    x = correlated(np.random.default_rng(2), 1000, 32, shift=5.0)
    assert abs(fid_from_features(x, x.copy())) < 1e-8


def test_fid_handles_a_singular_covariance():
    # rank-deficient features (more dimensions than the data spans) must not produce nan/complex
    rng = np.random.default_rng(3)
    low = rng.normal(size=(400, 3))
    real = np.concatenate([low, low @ rng.normal(size=(3, 5))], axis=1)  # (400, 8), rank 3
    fake = real + 0.1
    assert fid_from_features(real, fake) == pytest.approx(8 * 0.01, abs=1e-6)  # √(rounding noise) ~ 1e-7


def test_fid_refuses_fewer_than_five_samples_per_dimension():
    rng = np.random.default_rng(4)
    ok = rng.normal(size=(320, 64))
    with pytest.raises(UserError, match=r"at least 320 samples.*eval\.num_samples"):
        fid_from_features(ok, ok[:319])
    with pytest.raises(UserError, match="320"):
        fid_from_features(ok[:100], ok)
    assert np.isfinite(fid_from_features(ok, ok[::-1]))


def test_fid_of_non_finite_features_is_nan():
    x = np.random.default_rng(5).normal(size=(50, 4))
    y = x.copy()
    y[3, 1] = np.nan
    assert math.isnan(fid_from_features(x, y))


# ------------------------------------------------------------------------------------------ KID


def _torch_fidelity_kid(real, fake, **kw):
    from torch_fidelity.metric_kid import kid_features_to_metric

    out = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), verbose=False, **kw)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def test_kid_matches_torch_fidelity_on_the_same_subsets():
    rng = np.random.default_rng(6)
    real, fake = correlated(rng, 300, 32), correlated(rng, 250, 32, shift=0.2)
    ref_mean, ref_std = _torch_fidelity_kid(real, fake, kid_subsets=20, kid_subset_size=100, rng_seed=7)
    mean, std = kid_from_features(real, fake, num_subsets=20, subset_size=100, seed=7)
    assert ref_mean > 0.01
    assert mean == pytest.approx(ref_mean, rel=1e-6)
    assert std == pytest.approx(ref_std, rel=1e-6)


def test_kid_on_the_full_sets_is_deterministic_and_matches_torch_fidelity():
    rng = np.random.default_rng(8)
    real, fake = correlated(rng, 200, 16), correlated(rng, 200, 16, shift=0.3)
    ref_mean, _ = _torch_fidelity_kid(real, fake, kid_subsets=1, kid_subset_size=200)
    # subset_size is clamped to N; any seed then gives the same (full-set) estimate
    m1, s1 = kid_from_features(real, fake, num_subsets=1, subset_size=1000, seed=1)
    m2, _ = kid_from_features(real, fake, num_subsets=1, subset_size=200, seed=2)
    assert m1 == pytest.approx(ref_mean, rel=1e-6) and m2 == pytest.approx(m1, rel=1e-12)
    assert s1 == 0.0


def test_kid_mmd_matches_the_definition():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 1
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    got = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y))
    assert got == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_seed_controls_subsets():
    rng = np.random.default_rng(10)
    real, fake = rng.normal(size=(120, 8)), rng.normal(size=(120, 8)) + 0.5
    a = kid_from_features(real, fake, num_subsets=5, subset_size=50, seed=0)
    assert a == kid_from_features(real, fake, num_subsets=5, subset_size=50, seed=0)
    assert a != kid_from_features(real, fake, num_subsets=5, subset_size=50, seed=1)


# ------------------------------------------------------------------------------------------ PRDC


def _reference_prdc(real, fake, k):
    from prdc import compute_prdc

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the sample counts
        return compute_prdc(real_features=real, fake_features=fake, nearest_k=k)


def test_prdc_matches_the_prdc_package():
    rng = np.random.default_rng(11)
    real = correlated(rng, 600, 16)
    fake = np.concatenate([correlated(rng, 350, 16, shift=0.4), correlated(rng, 150, 16, shift=3.0)])
    ours = prdc_from_features(real, fake, pr_k=3, dc_k=5, block_bytes=64 * 1024)  # many small blocks
    ref3, ref5 = _reference_prdc(real, fake, 3), _reference_prdc(real, fake, 5)
    for key, ref in (("precision", ref3), ("recall", ref3), ("density", ref5), ("coverage", ref5)):
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-6), key
    assert 0.1 < ours["precision"] < 0.9 and 0.1 < ours["recall"] < 0.9  # not a degenerate case


def test_prdc_matches_the_prdc_package_with_ties_and_duplicates():
    # integer points on a line: distances are exact, so ties and duplicates really happen and the
    # strict `<` and the k-th-value convention must be the package's
    rng = np.random.default_rng(15)
    real = rng.integers(0, 25, size=(80, 1)).astype(np.float64)
    fake = rng.integers(5, 35, size=(60, 1)).astype(np.float64)
    for k in (3, 5):
        ours = prdc_from_features(real, fake, pr_k=k, dc_k=k)
        ref = _reference_prdc(real, fake, k)
        for key in ours:
            assert ours[key] == pytest.approx(float(ref[key]), abs=1e-12), (k, key)


def test_prdc_block_size_does_not_change_the_result():
    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(300, 8)), rng.normal(size=(200, 8)) + 0.3
    whole = prdc_from_features(real, fake)
    tiny = prdc_from_features(real, fake, block_bytes=1)  # one row per block
    assert whole == tiny


def test_nearest_neighbour_radii_by_hand():
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    r = nearest_neighbour_radii(x, (1, 2))
    np.testing.assert_array_equal(r[1], [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_array_equal(r[2], [3.0, 2.0, 3.0, 6.0])
    with pytest.raises(UserError, match="at least 5 samples"):
        nearest_neighbour_radii(x, (4,))


def test_prdc_identical_sets():
    x = np.random.default_rng(13).normal(size=(200, 5))
    out = prdc_from_features(x, x.copy())
    assert out["precision"] == out["recall"] == out["coverage"] == 1.0
    assert out["density"] == pytest.approx(1.0, abs=0.05)  # each point lies in ~k balls


# ------------------------------------------------------------------------------------ classifier


def test_classifier_score_extremes():
    k = 10
    uniform = np.full((100, k), 1.0 / k)
    assert classifier_score(uniform, splits=10) == pytest.approx((1.0, 0.0), abs=1e-12)
    one_hot = np.eye(k)[np.arange(200) % k]  # confident, every class equally often in every split
    mean, std = classifier_score(one_hot, splits=10)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-9)
    collapsed = np.eye(k)[np.zeros(100, dtype=int)]  # confident but always the same class
    assert classifier_score(collapsed, splits=5)[0] == pytest.approx(1.0, abs=1e-12)


def test_classifier_score_matches_torch_fidelity_formula():
    from torch_fidelity.metric_isc import isc_features_to_metric

    probs = torch.softmax(torch.randn(103, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3, 1)
    ref = isc_features_to_metric(probs.log(), splits=4, shuffle=False)  # log p → softmax gives p back
    mean, std = classifier_score(probs, splits=4)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-6)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-5, abs=1e-9)


def test_class_histogram_and_kl_to_uniform():
    hist = class_histogram(torch.tensor([0, 2, 2, 3, 3, 3]), 5)
    assert hist.tolist() == [1, 0, 2, 3, 0] and hist.dtype == np.int64
    p = np.array([1, 0, 2, 3, 0]) / 6
    expected = sum(pi * math.log(pi * 5) for pi in p if pi > 0)
    assert kl_to_uniform(hist) == pytest.approx(expected, rel=1e-12)
    assert kl_to_uniform([4, 4, 4, 4]) == pytest.approx(0.0, abs=1e-15)
    assert kl_to_uniform([0, 9, 0]) == pytest.approx(math.log(3), rel=1e-12)
    with pytest.raises(ValueError):
        class_histogram([0, 5], 5)


def test_conditional_accuracy():
    assert conditional_accuracy([1, 2, 3, 4], np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError):
        conditional_accuracy([1, 2], [1])


# ------------------------------------------------------------------------------------ mixtures


def ring_centers(m: int = 8, radius: float = 2.0) -> np.ndarray:
    t = 2 * np.pi * np.arange(m) / m
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def test_mixture_metrics_on_hand_placed_points():
    centers, std = ring_centers(), 0.02  # 3σ = 0.06
    pts = [
        centers[0] + [0.01, 0.0],  # HQ, mode 0
        centers[0] + [0.0, -0.05],  # HQ, mode 0
        centers[0] + [0.059, 0.0],  # HQ, mode 0 (just inside 3σ)
        centers[2] + [0.03, 0.03],  # HQ, mode 2 (distance 0.042)
        centers[5],  # HQ, mode 5
        centers[5] + [0.07, 0.0],  # nearest is mode 5 but outside 3σ: low quality
        [0.0, 0.0],  # far from every mode
        centers[6] * 1.5,  # far, nearest mode 6
    ]
    out = mixture_metrics(np.array(pts), centers, std)
    assert out["modes_covered"] == 3  # modes 0, 2, 5
    assert out["high_quality_fraction"] == pytest.approx(5 / 8)
    p = np.array([3, 0, 1, 0, 0, 1, 0, 0]) / 5
    expected = sum(pi * math.log(pi * 8) for pi in p if pi > 0)
    assert out["reverse_kl"] == pytest.approx(expected, rel=1e-8)
    assert modes_covered(np.array(pts), centers, std) == 3
    assert modes_covered(np.array(pts), centers, std, min_count=2) == 1
    assert high_quality_fraction(np.array(pts), centers, std) == out["high_quality_fraction"]
    assert reverse_kl(np.array(pts), centers, std) == out["reverse_kl"]


def test_mixture_metrics_perfect_collapsed_and_empty():
    centers, std = ring_centers(), 0.02
    rng = np.random.default_rng(14)
    perfect = centers[np.arange(2400) % 8] + rng.normal(scale=std * 0.5, size=(2400, 2))  # 300 per mode
    out = mixture_metrics(perfect, centers, std)
    assert out["modes_covered"] == 8 and out["high_quality_fraction"] == 1.0
    assert out["reverse_kl"] == pytest.approx(0.0, abs=1e-9)
    collapsed = centers[[3] * 100]
    out = mixture_metrics(collapsed, centers, std)
    assert out["modes_covered"] == 1 and out["reverse_kl"] == pytest.approx(math.log(8), rel=1e-8)
    empty = mixture_metrics(np.zeros((10, 2)), centers, std)
    assert empty["modes_covered"] == 0 and empty["high_quality_fraction"] == 0.0
    assert math.isnan(empty["reverse_kl"])


@pytest.mark.parametrize("dim", [2, 3])
def test_mode_spread_is_one_for_the_mixture_and_reads_how_wide_the_modes_are(dim):
    """HQ counts a sample on its mode centre as perfect; the spread says the modes are too tight.
    The reference is the mixture itself, drawn here: its own spread is 1 (within sampling noise)."""
    from ganrun.metrics import mode_spread

    rng = np.random.default_rng(dim)
    centers, std = np.zeros((6, dim)), 0.05
    centers[:, 0] = np.arange(6) * 2.0  # modes 40σ apart on a line
    pick = rng.integers(0, 6, size=60_000)
    for scale, expected in ((1.0, 1.0), (0.5, None), (1.3, None)):
        x = centers[pick] + rng.normal(scale=scale * std, size=(60_000, dim))
        hq = np.linalg.norm(x - centers[pick], axis=1) < 3 * std
        # the same ratio by brute force: this draw's RMS within 3σ over a large draw of the mixture's own
        own = rng.normal(scale=std, size=(1_000_000, dim))
        own = own[np.linalg.norm(own, axis=1) < 3 * std]
        brute = np.sqrt(np.mean(np.sum((x - centers[pick])[hq] ** 2, axis=1)) / np.mean(np.sum(own ** 2, axis=1)))
        got = mode_spread(x, centers, std)
        assert got == pytest.approx(brute, rel=0.01), (scale, got, brute)
        if expected is not None:
            assert got == pytest.approx(expected, abs=0.01)
    assert mode_spread(centers[pick], centers, std) == 0.0  # every sample on a centre: 100% HQ, no width
    assert math.isnan(mode_spread(centers + 1.0, centers, std))  # nothing high quality
    assert mixture_metrics(centers[pick], centers, std)["mode_spread"] == 0.0


# ------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    "kind,n,network,name",
    [("fid", 10000, "domain", "fid10k/domain"), ("kid", 10000, "domain", "kid10k/domain"),
     ("pr", 10000, "domain", "pr10k/domain"), ("fid", 2500, "inception", "fid2.5k/inception"),
     ("fid", 500, "domain", "fid500/domain"), ("fid", 50000, "inception", "fid50k/inception"),
     ("kid", 1234, "domain", "kid1.234k/domain")],
)
def test_metric_name(kind, n, network, name):
    assert metric_name(kind, n, network) == name


def test_metric_name_rejects_bad_parts():
    for args in (("fid", 0, "domain"), ("fid", 10.5, "domain"), ("", 10, "domain"), ("fid", 10, "a/b")):
        with pytest.raises(ValueError):
            metric_name(*args)
