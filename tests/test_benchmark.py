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
