"""`ganrun features fit`: train (or load from the cache) the domain classifier for a dataset."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from omegaconf import DictConfig

from ganrun.config.compose import to_typed
from ganrun.config.schema import FeaturesAppConfig
from ganrun.data import build_dataset
from ganrun.errors import UserError
from ganrun.evaluation import cache_dir_of, load_feature_net, reference_features
from ganrun.metrics import fid_from_features, metric_name
from ganrun.observe.console import FractionProgress
from ganrun.runtime import pick_device


def fit(cfg: DictConfig) -> dict[str, Any]:
    c: FeaturesAppConfig = to_typed(cfg, FeaturesAppConfig)
    if c.eval.features != "domain":
        raise UserError("ganrun features fit trains the domain classifier; leave eval.features=domain")
    device = pick_device(c.device.name)
    data_cfg = replace(c.dataset, limit=None)
    train, test = build_dataset(data_cfg, "train"), build_dataset(data_cfg, "test")
    if not train.spec.is_image:
        raise UserError(f"dataset={train.spec.name} is 2-D points; its metrics need no feature network")
    progress = FractionProgress(f"fitting the domain classifier for {train.spec.name}", c.logger.progress)
    try:
        net = load_feature_net(c.eval, train, test, device, progress)
    finally:
        progress.close()
    info = dict(net.info)
    how = "loaded from the cache" if info.get("cached") else f"trained in {info.get('train_seconds', 0):.0f} s"
    print(f"{net.id}: test accuracy {info['test_accuracy']:.2%} on {len(test.data):,} {train.spec.name} test images "
          f"({how}; {info['path']})")
    # the floor any generator is measured against: real train images scored like samples
    n = min(c.eval.num_samples, len(train.data), len(test.data))
    real, _ = reference_features(net, test.data[:n], cache_dir_of(c.eval))
    other, _ = net(train.data[:n])
    info["fid_floor"] = fid_from_features(real, other)
    print(f"{metric_name('fid', n, 'domain')} of {n:,} real train images against the test split "
          f"(the floor for generators): {info['fid_floor']:.4g}")
    return info


def run(cfg: DictConfig) -> dict[str, Any]:
    return fit(cfg)
