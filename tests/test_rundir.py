"""A run owns its directory (issue 14, class 1): one OS lock for the run's life, the guard judges the
final resolved path, nothing is written before every check passed.

Through `cli_fork.ForkServer` (the real `ganrun.cli.main` in fresh processes): two runs racing for
one dir (the second is refused in one line naming the first's PID; the first's files are untouched
and it finishes), `hydra.run.dir` written with interpolations that resolve to an earlier run's dir,
a dangling symlink, and refusals found inside the job (sizes, BatchNorm) that leave no dir behind.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.cli_fork import ForkServer
from tests.test_faults import env, files, load

QUICK = ["dataset=ring8", "dataset.num_points=200", "device=cpu", "logger.print_config=false", "logger.progress=none",
         "logger.tensorboard=false", "trainer.batch_size=8", "trainer.sample_every=0", "trainer.max_steps=3"]


@pytest.fixture(scope="module")
def cli():
    server = ForkServer(env())
    yield server
    server.close()


def one_line(r) -> str:
    assert "Traceback" not in r.stderr and r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    return line


def test_two_runs_racing_for_one_dir_the_second_is_refused_naming_the_first(tmp_path, cli):
    run = tmp_path / "run"
    # the first holds the dir (locked at the start of its job) and waits 8 s in its data loading
    first = cli.start(["train", *QUICK, f"hydra.run.dir={run}"], tmp_path,
                      env={"GANRUN_TEST_PHASE": "data loading:8"})
    deadline = time.monotonic() + 120
    while "ganrun-test: phase data loading" not in first.stderr():
        assert first.poll() is None and time.monotonic() < deadline, first.stderr()
        time.sleep(0.05)
    before = files(run)
    second = cli.run(["train", *QUICK, "seed=1", f"hydra.run.dir={run}"], tmp_path)
    line = one_line(second)
    assert re.fullmatch(rf"ganrun: error: hydra\.run\.dir={re.escape(str(run))} is in use by another ganrun run "
                        rf"\(PID {first.pid} holds its lock\); wait for it to end or choose another hydra\.run\.dir",
                        line), line
    assert files(run) == before  # the second wrote nothing
    r = first.wait()
    assert r.returncode == 0, r.stderr
    assert load(run / "checkpoints" / "last.pt")["config"]["seed"] == 0  # the first run's, whole


def test_an_interpolated_run_dir_is_judged_by_its_resolved_path(tmp_path, cli):
    r = cli.run(["train", *QUICK, "hydra.run.dir=runs/${model.name}-${seed}"], tmp_path)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "mlp-0"
    before = files(run)
    again = cli.run(["train", *QUICK, "hydra.run.dir=runs/${model.name}-${seed}"], tmp_path)
    assert re.fullmatch(r"ganrun: error: hydra\.run\.dir=runs/mlp-0 already holds a run \(checkpoints/\); .*",
                        one_line(again))
    assert files(run) == before  # its .hydra/ record included


def test_a_dangling_symlink_run_dir_is_one_line(tmp_path, cli):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    line = one_line(cli.run(["train", *QUICK, f"hydra.run.dir={tmp_path / 'link'}"], tmp_path))
    assert "goes through a dangling symlink" in line and not (tmp_path / "gone").exists()


@pytest.mark.parametrize("bad", ["trainer.batch_size=1", "model.latent_dim=1000000000", "optimizer.lr=nan"])
def test_a_refused_run_writes_nothing(bad, tmp_path, cli):
    r = cli.run(["train", *QUICK, bad, f"hydra.run.dir={tmp_path / 'new' / 'run'}"], tmp_path)
    one_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))  # no .hydra/, no train.log


def test_the_record_is_written_once_the_checks_passed(tmp_path, cli):
    run = tmp_path / "run"
    r = cli.run(["train", *QUICK, f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (run / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert (run / "train.log").read_text().strip()  # the console copy, not an empty file of Hydra's
    assert "trainer.max_steps=3" in (run / ".hydra" / "overrides.yaml").read_text()
