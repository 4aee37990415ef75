"""benchmarks/throughput.py keeps working: a tiny CPU run in a subprocess, checked through its JSON.

No timing assertions: CI machines differ. The figures only have to exist and be positive.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # kept out of the fast suite for time; `make test-full` runs it
def test_throughput_benchmark_runs_on_cpu_and_writes_json(tmp_path, cli_env):
    out = tmp_path / "throughput.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.throughput", "--device", "cpu", "--data", "synthetic",
         "--synthetic-size", "256", "--batch-size", "16", "--steps", "2", "--warmup", "1",
         "--models", "mlp,no_such_model", "--compile", "graph", "--threads", "1", "--out", str(out)],
        cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert (report["device"], report["batch_size"], report["compile"]) == ("cpu", 16, "graph")
    mlp, missing = report["results"]
    assert mlp["model"] == "mlp" and mlp["status"] == "ok"
    for path in ("baseline", "ganrun"):
        figures = mlp[path]
        assert figures["images_per_s"] > 0 and figures["flops_per_step"] > 0 and figures["tflops"] > 0
        assert all(math.isfinite(v) for v in figures["final_losses"])
    assert mlp["ratio"] > 0
    # graph cannot run on a CPU: the trainer fell back to eager and said why
    assert mlp["ganrun"]["compile_used"] == "none"
    assert any("CUDA graphs need a CUDA device" in m for m in mlp["ganrun"]["messages"])
    assert missing["status"] == "skipped" and "not registered" in missing["note"]
    startup = report["startup"]
    assert startup["returncode"] == 0 and 0 < startup["first_step_s"] <= startup["total_s"]
    # the printed table
    assert "baseline img/s" in proc.stdout and "ganrun img/s" in proc.stdout
    assert "no_such_model" in proc.stdout and "skipped" in proc.stdout
    assert "CLI start-up to the first training step" in proc.stdout


def test_fid_ranking_scores_runs_as_ganrun_eval_does_and_refuses_mixed_data(ganrun, tmp_path, cli_env):
    """benchmarks/fid_ranking.py on a tiny image run: its fid_domain is `ganrun eval`'s number for the
    same samples, the same G given twice scores the same in all three networks, an untrained G is far
    above the real-data floor in each, and runs of different datasets are refused in one line."""
    from tests.conftest import FAST, make_idx_dataset

    data = make_idx_dataset(tmp_path / "fm", n_train=1300, n_test=1300)
    run, ring = tmp_path / "fm-run", tmp_path / "ring-run"
    for where, args in ((run, [f"dataset.root={data}", "trainer.batch_size=32"]), (ring, ["dataset=ring8"])):
        out = ganrun("train", *FAST, *args, "trainer.max_steps=5", f"hydra.run.dir={where}")
        assert out.returncode == 0, out.stderr
    evaluated = ganrun("eval", f"checkpoint={run}", "device=cpu", "eval.num_samples=1300")
    assert evaluated.returncode == 0, evaluated.stderr
    (written,) = (run / "checkpoints").glob("metrics_last_0000005_*-domain_seed0.json")
    record = json.loads(written.read_text())
    (fid,) = [v for k, v in record["metrics"].items() if k.startswith("fid") and k.endswith("/domain")]

    def bench(*runs):
        return subprocess.run([sys.executable, "-m", "benchmarks.fid_ranking", *map(str, runs), "--num-samples", "1300",
                               "--out", str(tmp_path / "ranking.json")],
                              cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=300)

    proc = bench(run, run / "checkpoints" / "last.pt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "ranking.json").read_text())
    a, b = report["runs"]
    assert a["fid_domain"] == pytest.approx(fid, rel=1e-9)
    networks = ("fid_domain", "fid_pixel_mlp", "fid_pixel_pca64")
    assert [a[k] for k in networks] == [b[k] for k in networks]
    for k in networks:
        assert math.isfinite(report["floor"][k]) and a[k] > 3 * report["floor"][k], (k, a[k], report["floor"][k])
    assert 0.1 < report["pixel_mlp_test_accuracy"] <= 1.0
    mixed = bench(run, ring)
    assert mixed.returncode == 2 and "must share dataset and resolution" in mixed.stderr
    assert len(mixed.stderr.strip().splitlines()) == 1 and "Traceback" not in mixed.stderr
    missing = bench(tmp_path / "no-such-run")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
