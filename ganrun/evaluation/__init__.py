"""The evaluation service: feature networks, their cache, and the evaluator that scores generators.

    evaluator.py   Evaluator (one per run: reference features once, then any generator), metric_tag
    nets.py        FeatureNet (a network bound to its id), load_feature_net (domain or Inception)
    domain.py      DomainClassifier and fit_domain_classifier
    extract.py     extract()/extract_features(): images → float64 features, uint8-quantized, no TF32
    cache.py       the on-disk cache: fitted classifiers (fingerprinted) and reference features
    inception.py   FIDInceptionV3 from a local pytorch-fid weights file (needs torchvision)

The metrics themselves are pure functions on features in `ganrun.metrics`; this package only
feeds them samples and features.
"""

from __future__ import annotations

from ganrun.evaluation.cache import (
    data_fingerprint,
    default_cache_dir,
    feature_network_id,
    load_or_fit_classifier,
    reference_features,
)
from ganrun.evaluation.domain import DomainClassifier, fit_domain_classifier
from ganrun.evaluation.evaluator import Evaluator, metric_tag
from ganrun.evaluation.extract import extract, extract_features, no_tf32, predict_labels, to_signed_unit_range
from ganrun.evaluation.nets import FeatureNet, cache_dir_of, load_feature_net

__all__ = [
    "DomainClassifier", "Evaluator", "FeatureNet", "cache_dir_of", "data_fingerprint", "default_cache_dir",
    "extract", "extract_features", "feature_network_id", "fit_domain_classifier", "load_feature_net",
    "load_or_fit_classifier", "metric_tag", "no_tf32", "predict_labels", "reference_features",
    "to_signed_unit_range",
]
