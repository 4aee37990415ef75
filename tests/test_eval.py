"""`ganrun eval` and `ganrun sample` on checkpoints of real (tiny) runs; evaluation during training."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FAST, make_idx_dataset, read_events

EVAL_SMALL = ["eval.num_samples=400", "eval.classifier_epochs=1", "eval.batch_size=200"]


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory):
    return make_idx_dataset(tmp_path_factory.mktemp("fm"), n_train=600, n_test=450)


def train_run(ganrun, tmp_path, name, *args):
    run = tmp_path / name
    out = ganrun("train", *FAST, *args, f"hydra.run.dir={run}")
    assert out.returncode == 0, out.stderr
    return run


def test_eval_on_ring8_reports_the_mixture_protocol(ganrun, tmp_path):
    run = train_run(ganrun, tmp_path, "ring", "dataset=ring8", "trainer.max_steps=10", "trainer.batch_size=64")
    out = ganrun("eval", f"checkpoint={run}", "device=cpu")
    assert out.returncode == 0, out.stderr
    record = json.loads((run / "checkpoints" / "metrics_last_0000010_mixture_seed0.json").read_text())
    metrics = record["metrics"]
    assert 0 <= metrics["modes_covered2.5k/mixture"] <= 8
    assert 0 <= metrics["high_quality_fraction2.5k/mixture"] <= 1
    assert record["protocol"]["num_samples"] == 2500 and record["step"] == 10
    assert "modes_covered2.5k/mixture" in out.stdout
    assert (run / "checkpoints" / "eval_samples_last_0000010_mixture_seed0.png").is_file()


def test_eval_on_images_writes_json_grid_and_tensorboard(ganrun, tmp_path, idx_data):
    run = train_run(ganrun, tmp_path, "fm", f"dataset.root={idx_data}", "trainer.max_steps=10",
                    "trainer.batch_size=32", "trainer.ema_decay=0.9")
    out = ganrun("eval", f"checkpoint={run}/checkpoints/last.pt", "device=cpu", *EVAL_SMALL)
    assert out.returncode == 0, out.stderr
    record = json.loads((run / "checkpoints" / "metrics_last_0000010_400-domain_seed0.json").read_text())
    m = record["metrics"]
    assert record["generator"] == "G_ema"
    for name in ("fid400/domain", "kid400/domain", "precision400/domain", "recall400/domain",
                 "density400/domain", "coverage400/domain", "classifier_score400/domain", "class_kl400/domain"):
        assert name in m and np.isfinite(m[name]), name
    assert m["fid400/domain"] > 0 and 1 <= m["classifier_score400/domain"] <= 10
    proto = record["protocol"]
    assert proto["reference_split"] == "test" and proto["feature_network"].startswith("domain-")
    assert proto["num_samples"] == 400 and proto["reference_samples"] == 400
    assert re.search(r"fid400/domain\s*│\s*[\d.]+", out.stdout)
    tags = read_events(run).Tags()["scalars"]
    assert "metrics/fid400_domain" in tags
    # a second eval reuses the cached classifier and reference features and gives the same FID
    again = ganrun("eval", f"checkpoint={run}", "device=cpu", *EVAL_SMALL, "overwrite=true")
    assert again.returncode == 0, again.stderr
    assert "fitting the domain classifier" not in again.stdout
    again = json.loads((run / "checkpoints" / "metrics_last_0000010_400-domain_seed0.json").read_text())
    assert again["metrics"]["fid400/domain"] == m["fid400/domain"]


def test_eval_during_training_logs_fid_and_keeps_best(ganrun, tmp_path, idx_data):
    run = train_run(ganrun, tmp_path, "fm_eval", f"dataset.root={idx_data}", "trainer.max_steps=20",
                    "trainer.batch_size=32", "eval.every=10", *EVAL_SMALL)
    fid = read_events(run).Scalars("metrics/fid400_domain")
    assert [e.step for e in fid] == [10, 20]
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["best"]["metric"] == "fid400/domain"
    assert best["best"]["value"] == pytest.approx(min(e.value for e in fid), rel=1e-5)
    assert best["nimg"] == best["step"] * 32  # the counters of the evaluated step, not of an older checkpoint


def test_sample_grid_interpolation_and_bad_label(ganrun, tmp_path, idx_data):
    run = train_run(ganrun, tmp_path, "fm_s", f"dataset.root={idx_data}", "trainer.max_steps=3", "trainer.batch_size=32")
    out = ganrun("sample", f"checkpoint={run}", "n=16", f"out={tmp_path / 'g.png'}", "device=cpu")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "g.png").size == (4 * 30 + 2, 4 * 30 + 2)
    out = ganrun("sample", f"checkpoint={run}", "interpolate=true", "n=20", f"out={tmp_path / 'i.png'}", "device=cpu")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "i.png").size == (10 * 30 + 2, 2 * 30 + 2)
    bad = ganrun("sample", f"checkpoint={run}", "label=3", "device=cpu")
    assert bad.returncode == 2 and "not conditional" in bad.stderr and "Traceback" not in bad.stderr


def test_conditional_grids_have_one_row_per_class(ganrun, tmp_path, idx_data):
    """cgan on 10 classes: `sample n=64` and the training grid are 10 rows of 6 (the eval grid: below)."""
    run = train_run(ganrun, tmp_path, "cg", "model=cgan", f"dataset.root={idx_data}", "trainer.max_steps=3",
                    "trainer.batch_size=32")
    rows_of_6 = (6 * 30 + 2, 10 * 30 + 2)  # (width, height): 28×28 cells with 2-pixel padding
    assert Image.open(run / "samples" / "fakes_0000000.png").size == rows_of_6
    out = ganrun("sample", f"checkpoint={run}", "n=64", f"out={tmp_path / 'c.png'}", "device=cpu")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "c.png").size == rows_of_6
    assert "n=64 rounded to 60" in out.stdout and "one row of 6 per class" in out.stdout
    out = ganrun("sample", f"checkpoint={run}", "n=60", "label=3", f"out={tmp_path / 'l.png'}", "device=cpu")
    assert out.returncode == 0 and "rounded" not in out.stdout, out.stderr
    assert Image.open(tmp_path / "l.png").size == (8 * 30 + 2, 8 * 30 + 2)  # one class: a square grid


@pytest.mark.slow
def test_conditional_eval_grid_has_one_row_per_class(ganrun, tmp_path, idx_data):
    run = train_run(ganrun, tmp_path, "cg", "model=cgan", f"dataset.root={idx_data}", "trainer.max_steps=3",
                    "trainer.batch_size=32")
    out = ganrun("eval", f"checkpoint={run}", "device=cpu", *EVAL_SMALL)
    assert out.returncode == 0, out.stderr
    assert Image.open(run / "checkpoints" / "eval_samples_0000003.png").size == (6 * 30 + 2, 10 * 30 + 2)


def test_eval_needs_a_checkpoint(ganrun, tmp_path):
    out = ganrun("eval")
    assert out.returncode == 2 and "checkpoint" in out.stderr and "Traceback" not in out.stderr
    out = ganrun("eval", f"checkpoint={tmp_path / 'missing.pt'}")
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_best_checkpoint_skips_nan_evaluations_and_still_improves(monkeypatch, tmp_path):
    """A nan first evaluation (a diverged G) is not the best, and a later finite one still is."""
    from types import SimpleNamespace

    from ganrun.train import jobs as jobs_module

    saved = []
    monkeypatch.setattr(jobs_module.ckpt, "save_checkpoint", lambda path, state: saved.append(state["best"]["value"]))
    monkeypatch.setattr(jobs_module.RunJobs, "state", lambda self, step, nimg: {})
    values = iter([float("nan"), 5.0, float("inf"), 7.0, 3.0])

    class Evaluator:
        def evaluate(self, sampler):
            return {"fid/x": next(values)}

        def primary(self):
            return "fid/x", 1.0

    quiet = SimpleNamespace(scalars=lambda *a: None, message=lambda *a: None)
    jobs = jobs_module.RunJobs(tmp_path, quiet, quiet, None, None, None, None, None, None, None, None, None, {}, 1, 1,
                               make_evaluator=Evaluator)
    for step in range(5):
        jobs.evaluate(step, step)
    assert saved == [5.0, 3.0] and jobs.best == 3.0
