"""The evaluator: one per run, shared by `ganrun eval` and evaluation during training.

An `Evaluator` is built once per run: it loads (or fits, on first need, and caches) the feature
network for the dataset, extracts the reference features of the test split once (cached on
disk too), and then scores any generator it is handed. The metrics themselves are pure
functions in `ganrun.metrics`; this module only feeds them samples and features.

Protocol names carry sample count and feature network: `fid10k/domain`, `kid10k/domain`, ...
For 2-D mixtures the PacGAN/VEEGAN protocol is used instead: modes covered, high-quality
fraction and reverse KL on 2,500 samples.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Optional

import numpy as np
import torch

from ganrun import metrics as M
from ganrun.config.schema import DatasetConfig, EvalConfig
from ganrun.data import DataSpec, build_dataset
from ganrun.evaluation.cache import reference_features
from ganrun.evaluation.nets import FeatureNet, Progress, cache_dir_of, load_feature_net
from ganrun.runtime import generate, sample_inputs

MIXTURE_SAMPLES = 2500  # the PacGAN/VEEGAN protocol
DIVERSITY_BATCH = 256  # fixed batch for the mean pairwise feature distance (training health)


def metric_tag(name: str) -> str:
    """`fid10k/domain` → TensorBoard tag `metrics/fid10k_domain`."""
    return "metrics/" + name.replace("/", "_")


def mean_pairwise_distance(feats: np.ndarray) -> float:
    """Mean Euclidean distance between distinct rows: the sample-diversity gauge."""
    x = torch.from_numpy(np.ascontiguousarray(feats))
    d = torch.cdist(x, x)
    n = len(x)
    return float(d.sum() / (n * (n - 1))) if n > 1 else 0.0


class Evaluator:
    """Scores generators against the test split of one dataset, with one feature network."""

    def __init__(self, cfg: EvalConfig, dataset_cfg: DatasetConfig, spec: DataSpec, device: torch.device,
                 progress: Optional[Progress] = None) -> None:
        self.cfg, self.spec, self.device = cfg, spec, device
        self.net: Optional[FeatureNet] = None
        test_cfg = replace(dataset_cfg, limit=None)
        if not spec.is_image:
            self.num_samples = MIXTURE_SAMPLES
            self.reference_size = MIXTURE_SAMPLES
            return
        train = build_dataset(test_cfg, split="train")
        test = build_dataset(test_cfg, split="test")
        self.net = load_feature_net(cfg, train, test, device, progress)
        self.num_samples = cfg.num_samples
        reals = test.data[: cfg.num_samples]
        self.reference_size = len(reals)
        self.reference_split = "test"
        self.real_feats, self.real_probs = reference_features(self.net, reals, cache_dir_of(cfg))
        self.real_diversity = mean_pairwise_distance(self.real_feats[:DIVERSITY_BATCH])

    def name(self, metric: str) -> str:
        return M.metric_name(metric, self.num_samples, self.net.kind if self.net else "mixture")

    def primary(self) -> tuple[str, float]:
        """The metric best.pt tracks, and its sign (+1: lower is better)."""
        if self.net is None:
            return self.name("reverse_kl"), 1.0
        return self.name("fid"), 1.0

    def evaluate(self, G: torch.nn.Module, seed: Optional[int] = None) -> dict[str, float]:
        """All metrics for generator G (not modified; EMA G when the run keeps one)."""
        seed = self.cfg.seed if seed is None else seed
        t0 = time.perf_counter()
        z, labels = sample_inputs(self.num_samples, G.latent_dim, G.num_classes, seed)
        fakes = generate(G, z, labels, self.cfg.batch_size, to=torch.device("cpu"))
        if self.net is None:
            out = M.mixture_metrics(fakes.numpy(), np.asarray(self.spec.centers), self.spec.mode_std)
            results = {self.name(k): float(v) for k, v in out.items()}
        else:
            feats, probs = self.net(fakes)
            results = {
                self.name("fid"): M.fid_from_features(self.real_feats, feats),
            }
            kid_mean, kid_std = M.kid_from_features(self.real_feats, feats, seed=seed)
            results[self.name("kid")] = kid_mean
            results[self.name("kid_std")] = kid_std
            for k, v in M.prdc_from_features(self.real_feats, feats).items():
                results[self.name(k)] = float(v)
            results[self.name("diversity_ratio")] = mean_pairwise_distance(feats[:DIVERSITY_BATCH]) / max(self.real_diversity, 1e-12)
            if probs is not None:
                cs_mean, _ = M.classifier_score(probs)
                results[self.name("classifier_score")] = cs_mean
                pred = probs.argmax(1)
                hist = M.class_histogram(pred, self.spec.num_classes)
                results[self.name("class_kl")] = M.kl_to_uniform(hist)
                if labels is not None:
                    results[self.name("cond_acc")] = M.conditional_accuracy(pred, labels.numpy())
        results["eval/seconds"] = time.perf_counter() - t0
        return results

    def record(self, seed: Optional[int] = None) -> dict[str, Any]:
        """What the numbers mean: sample counts, reference split, feature network, seed."""
        rec: dict[str, Any] = {"num_samples": self.num_samples, "reference_samples": self.reference_size,
                               "seed": self.cfg.seed if seed is None else seed, "dataset": self.spec.name}
        if self.net is None:
            rec.update(protocol="2-D mixture (PacGAN/VEEGAN)", centers=len(self.spec.centers), mode_std=self.spec.mode_std)
        else:
            rec.update(reference_split=self.reference_split, feature_network=self.net.id,
                       classifier_test_accuracy=self.net.info.get("test_accuracy"))
        return rec

