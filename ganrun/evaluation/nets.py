"""Feature networks for evaluation, bound to their ids: the domain classifier or FID's Inception."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ganrun.config.schema import EvalConfig
from ganrun.data import ArrayDataset
from ganrun.errors import UserError
from ganrun.evaluation.cache import default_cache_dir, load_or_fit_classifier
from ganrun.evaluation.extract import extract, extract_features

Progress = Callable[[float, dict], None]


@dataclass
class FeatureNet:
    """A feature network bound to its id: features(images) → (N, d) float64, probs or None."""

    id: str  # e.g. domain-1a2b3c4d5e6f7a8b, inception-pool3
    kind: str  # domain or inception
    model: torch.nn.Module
    batch_size: int
    info: dict = field(default_factory=dict)

    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, Optional[np.ndarray]]:
        if self.kind == "domain":
            return extract(self.model, images, self.batch_size)
        return extract_features(self.model, images, self.batch_size), None


def load_feature_net(cfg: EvalConfig, train: ArrayDataset, test: ArrayDataset, device: torch.device,
                     progress: Optional[Progress] = None) -> FeatureNet:
    if cfg.features == "inception":
        from ganrun.evaluation.inception import load_fid_inception

        if not cfg.inception_weights:
            raise UserError("eval.features=inception needs eval.inception_weights=PATH to pytorch-fid's "
                            "pt_inception-2015-12-05-6726825d.pth (from pytorch-fid's GitHub releases)")
        model = load_fid_inception(cfg.inception_weights, device)
        return FeatureNet("inception-pool3", "inception", model, cfg.batch_size)
    if train.labels is None or test.labels is None or train.spec.num_classes < 2:
        raise UserError(f"eval.features=domain trains a classifier on the dataset's labels, but {train.spec.name} "
                        "has none; use a labelled dataset or eval.features=inception with eval.inception_weights")
    model, info = load_or_fit_classifier(
        train.data, train.labels, test.data, test.labels, seed=0, device=device,
        epochs=cfg.classifier_epochs, batch_size=cfg.classifier_batch_size, cache_dir=cfg.cache_dir or None,
        progress=progress, num_classes=train.spec.num_classes,
    )
    return FeatureNet(info["feature_network_id"], "domain", model, cfg.batch_size, info)


def cache_dir_of(cfg: EvalConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
