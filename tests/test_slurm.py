"""The Slurm path end to end on submitit's local executor: a sweep of jobs, preemption, requeue, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra: pip install 'ganrun[slurm]'")

from tests.conftest import FAST  # noqa: E402

STEPS = 150


def _pids_holding(folder: Path) -> set[int]:
    """Processes with a file open under `folder` (the run's TensorBoard event file)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).startswith(str(folder)):
                    found.add(int(proc.name))
                    break
        except OSError:
            continue
    return found


def _signal_job(job: Path, sig: int) -> None:
    pids = _pids_holding(job)
    assert len(pids) == 1, pids
    os.kill(pids.pop(), sig)


@pytest.mark.parametrize("rerun", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["sweep", "and-rerun"])
def test_sweep_on_submitit_local_jobs_stopped_by_sigusr2_and_sigterm_resume_to_completion(tmp_path, cli_env, rerun):
    """Two jobs run at once; mid-run, job 0 gets SIGUSR2 (Slurm's warning before a time limit or a
    preemption: checkpoint, then submitit requeues it) and job 1 gets SIGTERM (a preemption that
    Slurm requeues itself: checkpoint, exit 143). Both resume from their own last.pt with
    trainer.resume=auto: job 0 in its requeued run, job 1 when the same command runs again (`rerun`,
    slow: the sweep-rerun rules themselves are tested in test_sweeps)."""
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "hydra/launcher=submitit_local", "dataset=ring8", "dataset.num_points=2000",
            "trainer.batch_size=32", f"trainer.max_steps={STEPS}", *FAST, "trainer.checkpoint_every=10",
            "trainer.sample_every=0", "trainer.resume=auto", "seed=0,1", f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=${hydra.job.num}"]
    env = {**cli_env, "OMP_NUM_THREADS": "1"}  # two jobs on a shared CPU: no thread oversubscription
    command = [sys.executable, "-m", "ganrun", *args]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job0, job1 = sweep / "0", sweep / "1"
    end = time.monotonic() + 400
    while not all((job / "checkpoints/last.pt").exists() for job in (job0, job1)):  # both jobs are mid-run
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the jobs wrote no checkpoint"
        time.sleep(0.05)
    assert not (job1 / "result.json").exists(), "job 1 ended before it could be signalled"
    _signal_job(job0, signal.SIGUSR2)  # what Slurm sends before a time limit or on preemption
    _signal_job(job1, signal.SIGTERM)  # a preemption (or scancel)
    out, err = proc.communicate(timeout=600)

    from ganrun.sweeps.record import read_result
    from ganrun.train.checkpoint import load_checkpoint

    logs = "".join(p.read_text() for p in sorted(sweep.glob(".submitit/*/*_log.*")))
    print("\n".join(line for line in logs.splitlines()
                    if any(k in line for k in ("SIGUSR2", "SIGTERM", "Requeued", "resuming", "done:", "stopped"))))
    assert "ganrun: SIGUSR2 received: finishing this step and writing a checkpoint" in logs
    assert "Requeued job" in logs
    assert load_checkpoint(job0)["step"] == STEPS and read_result(job0)["status"] == "done"  # requeued, resumed
    assert "ganrun: SIGTERM received: finishing this step and writing a checkpoint" in logs
    stopped = read_result(job1)
    assert stopped["status"] == "interrupted" and 0 < load_checkpoint(job1)["step"] < STEPS
    assert proc.returncode != 0  # the sweep reports the stopped job
    if not rerun:
        return

    # the same command again (what Slurm's requeue runs): job 0 is skipped, job 1 resumes to the end
    r = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    logs = "".join(p.read_text() for p in sorted(sweep.glob(".submitit/*/*_log.*")))
    print("\n".join(line for line in logs.splitlines() if "resuming" in line or "skipped" in line))
    assert "already done" in logs and "resuming at" in logs
    for job in (job0, job1):
        assert load_checkpoint(job)["step"] == STEPS and read_result(job)["status"] == "done"
