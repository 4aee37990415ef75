"""Reports from result.json files (no training): protocols never mixed, seeds grouped, partial sweeps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ganrun.sweeps.placement import parallel_jobs, place
from ganrun.sweeps.record import Tracker, metric_kind, override_values, protocol_name, read_result
from ganrun.sweeps.render import csv_text, markdown, write_report
from ganrun.sweeps.report import build, collect

MIX = {"name": "2.5k/mixture", "dataset": "ring8", "num_samples": 2500, "reference_samples": 2500,
       "resolution": [2], "seed": 0}


def domain(net: str, res: int) -> dict:
    return {"name": "10k/domain", "dataset": "fashion_mnist", "feature_network": net, "num_samples": 10000,
            "reference_samples": 10000, "resolution": [1, res, res], "seed": 0, "classifier_test_accuracy": 0.9}


def write_run(root: Path, name: str, overrides: list[str], best: float | None, protocol: dict | None = MIX,
              status: str = "done", metric: str = "reverse_kl2.5k/mixture") -> Path:
    run = root / name
    t = Tracker(run, overrides)
    t.begin(None)
    if protocol is not None and best is not None:
        t.evaluated(10, 320, metric, {metric: best}, protocol)
    t.write(status)
    return run


def test_override_values_and_metric_names():
    assert override_values(["optimizer.lr=1e-4", "loss=hinge", "+x=true", "seed=3", "trainer.resume=auto",
                            "hydra.run.dir=a", "seed=4"]) == {"optimizer.lr": 1e-4, "loss": "hinge", "x": True,
                                                              "seed": 4}
    assert metric_kind("fid10k/domain") == "fid" and metric_kind("reverse_kl2.5k/mixture") == "reverse_kl"
    assert protocol_name("fid10k/domain") == "10k/domain"


def test_tracker_ignores_nan_and_returns_inf_for_failures(tmp_path):
    t = Tracker(tmp_path, [])
    t.begin(None)
    t.evaluated(5, 10, "m2.5k/x", {"m2.5k/x": math.nan}, MIX)
    assert t.best is None and t.objective("done") == math.inf
    t.evaluated(10, 20, "m2.5k/x", {"m2.5k/x": 0.5}, MIX)
    t.evaluated(15, 30, "m2.5k/x", {"m2.5k/x": 0.7}, MIX)
    assert t.best == {"value": 0.5, "step": 10} and t.last["value"] == 0.7
    assert t.objective("done") == 0.5 and t.objective("diverged") == math.inf
    # carried through a checkpoint: best, steps and segments survive a resume
    again = Tracker(tmp_path, [])
    again.begin(t.state_dict())
    assert again.best == t.best and again.segments == 2 and again.wall_seconds >= t.wall_before
    again.write("done")
    assert read_result(tmp_path)["primary"]["best"]["value"] == 0.5


def test_seeds_share_a_row_and_rows_rank_by_the_best_metric(tmp_path):
    for lr, values in (("1e-3", (0.9, 0.7)), ("1e-4", (0.2, 0.4))):
        for seed, v in enumerate(values):
            write_run(tmp_path, f"lr{lr}_s{seed}", [f"optimizer.lr={lr}", f"seed={seed}", "dataset=ring8"], v)
    write_run(tmp_path, "bad", ["optimizer.lr=1e10", "seed=0", "dataset=ring8"], None, status="diverged")
    report = build(tmp_path, collect(tmp_path))
    assert report.columns == ["optimizer.lr"] and report.seeds and len(report.tables) == 1
    rows = report.tables[0].rows
    assert [r.key["optimizer.lr"] for r in rows] == [1e-4, 1e-3, 1e10]
    assert [len(r.runs) for r in rows] == [2, 2, 1] and rows[0].score == pytest.approx(0.3)
    md = markdown(report)
    assert "| 1 | 0.0001 | 2 | 0.3 ± 0.14 |" in md and "diverged" in md
    assert len(csv_text(report).strip().splitlines()) == 1 + 5  # one line per run


def test_different_protocols_are_never_ranked_together(tmp_path):
    # the case: an MLP scored at 28x28 and a DCGAN at 32x32 by two domain classifiers
    write_run(tmp_path, "mlp", ["model=mlp"], 154.0, domain("domain-aaa", 28), metric="fid10k/domain")
    write_run(tmp_path, "dcgan", ["model=dcgan", "dataset.image_size=32"], 150.0, domain("domain-bbb", 32),
              metric="fid10k/domain")
    write_run(tmp_path, "crashed", ["model=dcgan", "dataset.image_size=64"], None, None, status="failed")
    report = build(tmp_path, collect(tmp_path))
    assert len(report.tables) == 3 and report.notes and "never ranked across tables" in report.notes[0]
    assert [len(t.rows) for t in report.tables] == [1, 1, 1] and report.tables[-1].primary is None
    titles = " ".join(t.title for t in report.tables)
    assert "domain-aaa" in titles and "1×28×28" in titles and "1×32×32" in titles
    assert all(row.rank == 1 for t in report.tables for row in t.rows)


def test_partial_sweep_reports_unfinished_jobs(tmp_path):
    write_run(tmp_path, "0_seed=0", ["seed=0"], 0.5)
    killed = tmp_path / "1_seed=1"  # killed before it wrote result.json
    (killed / ".hydra").mkdir(parents=True)
    (killed / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (killed / "checkpoints").mkdir()
    (tmp_path / "multirun.yaml").write_text("x: 1\n")
    report = write_report(tmp_path)
    statuses = [r.status for t in report.tables for row in t.rows for r in row.runs]
    assert statuses == ["done", "unfinished"]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.csv").is_file()


def test_placement_round_robin_and_threads():
    assert [place(j, 4, "auto", 1, gpus=2, cores=16).gpu for j in range(6)] == [0, 1, 0, 1, 0, 1]
    assert [place(j, 4, "cuda", 2, gpus=2, cores=16).gpu for j in range(6)] == [0, 0, 1, 1, 0, 0]
    cpu = place(3, 4, "auto", 1, gpus=0, cores=16)
    assert cpu.gpu is None and cpu.threads == 4
    assert place(0, 1, "cpu", 1, gpus=2, cores=2) == place(0, 1, "cpu", 1, gpus=0, cores=2)
    assert place(0, 1, "cpu", 1, gpus=2, cores=2).gpu is None and place(0, 1, "cpu", 1, gpus=0, cores=2).threads is None
    assert parallel_jobs({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                          "n_jobs": 3}) == 3
    assert parallel_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}) == 1


def test_result_file_is_plain_json(tmp_path):
    run = write_run(tmp_path, "r", ["seed=0"], 0.25)
    data = json.loads((run / "result.json").read_text())
    assert data["status"] == "done" and data["objective"] == 0.25 and data["protocol"]["name"] == "2.5k/mixture"
    assert set(data) >= {"primary", "metrics", "step", "images_seen", "wall_seconds", "images_per_second",
                         "overrides", "segments"}


def test_rows_without_a_score_rank_finished_runs_before_diverged_ones(tmp_path):
    """No finite metric anywhere (reverse KL is nan without high-quality samples): a run that finished
    still ranks above one that diverged, whatever the dir names say."""
    write_run(tmp_path, "0_lr-1e10", ["optimizer.lr=1e10"], float("nan"), status="diverged")
    write_run(tmp_path, "1_lr-1e-3", ["optimizer.lr=1e-3"], float("nan"))
    rows = build(tmp_path, collect(tmp_path)).tables[0].rows
    assert [(r.key["optimizer.lr"], r.runs[0].status) for r in rows] == [(1e-3, "done"), (1e10, "diverged")]
