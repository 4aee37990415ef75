"""Eval numbers come with their scale (the real-vs-real floor, the feature network's accuracy), and
2-D mixtures are drawn as richly in eval and sample as in training."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FAST, make_idx_dataset

EVAL_SMALL = ["eval.num_samples=400", "eval.classifier_epochs=1", "eval.batch_size=200"]
RED, BLUE = (220, 30, 30), (40, 90, 220)


def count(path, color) -> int:
    return int((np.asarray(Image.open(path).convert("RGB")) == color).all(-1).sum())


@pytest.fixture
def ring_run(ganrun, tmp_path):
    run = tmp_path / "ring"
    out = ganrun("train", *FAST, "dataset=ring8", "dataset.num_points=4000", "trainer.max_steps=10",
                 "trainer.batch_size=64", f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr
    return run


def test_ring8_eval_has_a_floor_and_a_full_scatter(ganrun, ring_run):
    out = ganrun("eval", f"checkpoint={ring_run}", "device=cpu")
    assert out.returncode == 0, out.stderr
    record = json.loads(next((ring_run / "checkpoints").glob("metrics_*.json")).read_text())
    floor = record["floor"]
    assert set(floor) == {"modes_covered2.5k/mixture", "high_quality_fraction2.5k/mixture", "reverse_kl2.5k/mixture",
                          "mode_spread2.5k/mixture"}
    assert abs(floor["mode_spread2.5k/mixture"] - 1) < 0.05  # the test split is drawn from the mixture
    assert floor["modes_covered2.5k/mixture"] == 8 and floor["high_quality_fraction2.5k/mixture"] > 0.95
    assert record["feature_network_accuracy"] is None
    assert "floor (real vs real)" in out.stdout
    # 2,500 generated points as in the training scatter (64 points make at most 256 red pixels)
    assert count(next((ring_run / "checkpoints").glob("eval_samples_*.png")), RED) > 1500


def test_ring8_interpolation_draws_paths(ganrun, ring_run, tmp_path):
    out = ganrun("sample", f"checkpoint={ring_run}", "interpolate=true", "n=40", "device=cpu",
                 f"out={tmp_path / 'paths.png'}")
    assert out.returncode == 0, out.stderr
    assert count(tmp_path / "paths.png", BLUE) > 100  # 4 paths of 10 points, joined by lines
    dots = ganrun("sample", f"checkpoint={ring_run}", "n=40", "device=cpu", f"out={tmp_path / 'dots.png'}")
    assert dots.returncode == 0 and count(tmp_path / "dots.png", BLUE) == 0


def test_image_eval_reports_floor_and_feature_accuracy(ganrun, tmp_path):
    data = make_idx_dataset(tmp_path / "fm", n_train=600, n_test=450)
    run = tmp_path / "fm-run"
    out = ganrun("train", *FAST, f"dataset.root={data}", "trainer.max_steps=5", "trainer.batch_size=32",
                 f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr
    out = ganrun("eval", f"checkpoint={run}", "device=cpu", *EVAL_SMALL)
    assert out.returncode == 0, out.stderr
    record = json.loads(next((run / "checkpoints").glob("metrics_*.json")).read_text())
    floor, m = record["floor"], record["metrics"]
    assert set(floor) == {"fid400/domain", "kid400/domain"}
    assert 0 <= floor["fid400/domain"] < m["fid400/domain"]  # real data beat a 5-step generator
    assert 0 < record["feature_network_accuracy"] <= 1
    assert record["feature_network_accuracy"] == record["protocol"]["classifier_test_accuracy"]
    assert re.search(r"fid400/domain\s*│\s*[\d.]+\s*│\s*[\d.]+", out.stdout), out.stdout
    assert re.search(r"feature network test accuracy \d+\.\d\d%", out.stdout), out.stdout
