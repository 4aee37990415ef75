"""Metrics: pure functions on float64 features (the feature networks are in `ganrun.evaluation`).

    fid.py         feature_statistics, frechet_distance, fid_from_features (N ≥ 5·d enforced)
    kid.py         kid_from_features: cubic-kernel unbiased MMD² over seeded subsets
    prdc.py        prdc_from_features: precision/recall (k=3), density/coverage (k=5), chunked
    classifier.py  classifier_score (Inception-Score formula on the domain classifier), histograms
    mixture.py     mixture_metrics: modes covered, high-quality fraction, reverse KL, mode spread (2-D mixtures)

Metric names state the protocol, `<kind><samples>/<network>`: see `metric_name`.
"""

from __future__ import annotations

from ganrun.metrics.classifier import class_histogram, classifier_score, conditional_accuracy, kl_to_uniform
from ganrun.metrics.fid import feature_statistics, fid_from_features, frechet_distance, min_fid_samples
from ganrun.metrics.kid import kid_from_features
from ganrun.metrics.mixture import high_quality_fraction, mixture_metrics, mode_spread, modes_covered, reverse_kl
from ganrun.metrics.prdc import density_coverage, precision_recall, prdc_from_features


def sample_count_tag(num_samples: int) -> str:
    """10000 → "10k", 2500 → "2.5k", 50000 → "50k", 500 → "500" (thousands as k, no trailing zeros)."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
    if num_samples < 1000:
        return str(num_samples)
    return f"{num_samples / 1000:.6g}k" if num_samples % 1000 else f"{num_samples // 1000}k"


def metric_name(kind: str, num_samples: int, network: str) -> str:
    """The protocol name of a metric: metric_name("fid", 10000, "domain") → "fid10k/domain".

    kind: fid, kid, pr, dc, cs (classifier score), ...; network: the feature network
    ("domain", "inception"). Numbers under different names are never compared.
    """
    if not kind or not kind.isidentifier() or not network or "/" in network or not network.strip() == network:
        raise ValueError(f"bad metric name parts: kind={kind!r}, network={network!r}")
    return f"{kind}{sample_count_tag(num_samples)}/{network}"


__all__ = [
    "class_histogram", "classifier_score", "conditional_accuracy", "density_coverage", "feature_statistics",
    "fid_from_features", "frechet_distance", "high_quality_fraction", "kid_from_features", "kl_to_uniform",
    "metric_name", "min_fid_samples", "mixture_metrics", "mode_spread", "modes_covered", "precision_recall",
    "prdc_from_features", "reverse_kl", "sample_count_tag",
]
