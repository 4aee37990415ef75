"""Sweeps as a user runs them: parallel jobs, result.json, reports, divergence, killed sweeps, Optuna, HParams."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ganrun.sweeps.record import override_values
from tests.conftest import read_events

# tiny ring8 runs: 6 steps, mode metrics every 3, a checkpoint every 3
# the image MLP's widths (not ring8's 3 x 128 default): with it these 6-step runs reach high-quality samples,
# so the ranked metric (reverse KL of the high-quality samples) is a number, not nan
TINY = ["dataset=ring8", "model.g_widths=[256,512,1024]", "model.d_widths=[512,256]", "device.cpu_threads=null",
        "device=cpu", "logger.print_config=false", "logger.progress=none", "trainer.batch_size=16",
        "trainer.max_steps=6", "trainer.log_every=3", "trainer.sample_every=6", "trainer.checkpoint_every=3",
        "eval.every=3"]


def results(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))}


def report_rows(sweep: Path) -> list[dict]:
    with open(sweep / "report.csv") as f:
        return list(csv.DictReader(f))


def test_joblib_sweep_records_ranks_groups_seeds_and_logs_hparams(ganrun, tmp_path):
    sweep = tmp_path / "sweep"
    out = ganrun("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY,
                 "optimizer.lr=1e-3,1e-4", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr[-3000:]
    found = results(sweep)
    assert len([p for p in sweep.iterdir() if p.is_dir()]) == 4 and len(found) == 4
    assert all(r["status"] == "done" and r["step"] == 6 and r["primary"]["metric"] == "reverse_kl2.5k/mixture"
               for r in found.values())
    assert all(r["protocol"]["name"] == "2.5k/mixture" and r["images_seen"] == 6 * 16 for r in found.values())

    # the report ranks the lr groups by the mean of their runs' own best metric, seeds in one row
    means = {}
    for r in found.values():
        lr = next(o.split("=")[1] for o in r["overrides"] if o.startswith("optimizer.lr="))
        means.setdefault(float(lr), []).append(r["objective"])
    expected = sorted(means, key=lambda lr: (math.isinf(statistics.fmean(means[lr])), statistics.fmean(means[lr])))
    rows = report_rows(sweep)
    ranked = sorted({(int(r["rank"]), float(r["optimizer.lr"])) for r in rows})
    assert [lr for _, lr in ranked] == expected
    assert sorted(float(r["best"]) for r in rows if r["best"]) == pytest.approx(sorted(
        r["objective"] for r in found.values() if math.isfinite(r["objective"])), rel=1e-5)
    md = (sweep / "report.md").read_text()
    assert "| optimizer.lr | n | best |" in md and " ± " in md and (sweep / "report.png").stat().st_size > 1000

    # `ganrun report DIR` rebuilds the same ranking from the files; the table names the protocol
    again = ganrun("report", sweep)
    assert again.returncode == 0, again.stderr
    assert "2.5k/mixture" in again.stdout and "optimizer.lr" in again.stdout
    assert (sweep / "report.md").read_text() == md

    # HParams: the overrides and final metrics are in the run's own events (no sub-run), as TensorBoard reads them
    from tensorboard.plugins.hparams.metadata import PLUGIN_NAME, SESSION_START_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    job = sorted(p for p in sweep.iterdir() if p.is_dir())[0]
    assert not [p for p in job.iterdir() if p.is_dir() and p.name[0].isdigit()]  # no add_hparams sub-run
    acc = read_events(job)
    content = acc.PluginTagToContent(PLUGIN_NAME)
    start = HParamsPluginData.FromString(content[SESSION_START_INFO_TAG]).session_start_info
    assert start.hparams["optimizer.lr"].number_value == pytest.approx(1e-3)
    assert start.hparams["seed"].number_value == 0 and start.hparams["dataset"].string_value == "ring8"
    best = acc.Scalars("hparam/best_reverse_kl")[-1]
    assert best.step == 6 and best.value == pytest.approx(found[job.name]["objective"], rel=1e-6)
    assert "hparam/modes_covered2.5k_mixture" in acc.Tags()["scalars"]


def test_a_diverging_job_is_recorded_and_the_sweep_goes_on(ganrun, tmp_path):
    sweep = tmp_path / "sweep"
    out = ganrun("train", "-m", *TINY, "optimizer.lr=1e10,1e-3", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "diverged" in out.stderr and "the sweep goes on" in out.stderr and "Traceback" not in out.stderr
    by_lr = {float(r["overrides"][-1].split("=")[1]): r for r in results(sweep).values()}
    assert by_lr[1e10]["status"] == "diverged" and by_lr[1e10]["objective"] == math.inf
    assert "became nan" in by_lr[1e10]["error"] or "became inf" in by_lr[1e10]["error"]
    assert by_lr[1e-3]["status"] == "done" and by_lr[1e-3]["step"] == 6
    rows = report_rows(sweep)
    assert [(r["optimizer.lr"], r["status"]) for r in rows] == [("0.001", "done"), ("1e+10", "diverged")]
    assert "| 2 | 1e+10 | — |" in (sweep / "report.md").read_text()


def test_a_failing_job_does_not_end_the_sweep(ganrun, tmp_path):
    sweep = tmp_path / "sweep"
    out = ganrun("train", "-m", *TINY, "trainer.n_critic=1,0", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr[-3000:]
    found = {override_values(r["overrides"])["trainer.n_critic"]: r for r in results(sweep).values()}
    assert found[0]["status"] == "failed" and "trainer.n_critic" in found[0]["error"]
    assert found[1]["status"] == "done"
    assert [r["status"] for r in report_rows(sweep)] == ["done", "failed"]


@pytest.mark.slow
def test_a_killed_sweep_rerun_skips_finished_jobs_and_resumes_the_others(cli_env, tmp_path):
    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "ganrun", "train", "-m", *TINY, "trainer.max_steps=30", "trainer.checkpoint_every=5",
            "trainer.sample_every=10", "eval.every=10", "seed=0,1,2", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 400
    try:
        while time.time() < deadline:  # kill it while job 1 trains, job 0 finished
            second = list(sweep.glob("1_*/checkpoints/last.pt"))
            if list(sweep.glob("0_*/result.json")) and second:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not list(sweep.glob("1_*/result.json")) and not list(sweep.glob("2_*"))
    first = next(sweep.glob("0_*/result.json"))
    first_bytes, first_ckpt = first.read_bytes(), next(sweep.glob("0_*/checkpoints/last.pt")).stat().st_mtime_ns

    r = subprocess.run(args, cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "already done" in r.stderr
    assert first.read_bytes() == first_bytes  # not redone
    assert next(sweep.glob("0_*/checkpoints/last.pt")).stat().st_mtime_ns == first_ckpt
    found = results(sweep)
    assert [r["status"] for r in found.values()] == ["done"] * 3 and [r["step"] for r in found.values()] == [30] * 3
    assert [r["segments"] for r in found.values()] == [1, 2, 1]  # job 1 resumed from its last.pt
    assert len(report_rows(sweep)) == 3


def test_optuna_example_runs_four_trials_in_memory(ganrun, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "search"
    out = ganrun("train", "-m", "search=ring8_optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                 *TINY, f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr[-3000:]
    found = results(sweep)
    assert sorted(found) == ["0", "1", "2", "3"]
    import yaml

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(r["objective"] for r in found.values()))
    assert set(best["best_params"]) == {"optimizer.g_lr", "optimizer.d_lr", "optimizer.betas.0", "optimizer.betas.1",
                                        "trainer.n_critic", "loss"}
    assert len(report_rows(sweep)) == 4
