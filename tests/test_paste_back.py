"""Every command ganrun prints works when pasted back into a shell, also for run dirs with `=`, `,`
and spaces in them (what Hydra's own sweep dir names used to hold); sweep job dirs are short and
shell-safe."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ganrun.shell import override

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

RING = ["dataset=ring8", "dataset.num_points=256", "device=cpu", "trainer.batch_size=16", "logger.tensorboard=false",
        "trainer.sample_every=0"]
ODD = "0_optimizer.lr=1e-4,seed=0 x"  # a dir name as Hydra's default sweep names made them, plus a space


@pytest.fixture
def shell(tmp_path, cli_env) -> dict:
    """An environment whose PATH has `ganrun`, as after `pip install`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ganrun").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ganrun "$@"\n')
    (bin_dir / "ganrun").chmod(0o755)
    return {**cli_env, "PATH": f"{bin_dir}{os.pathsep}{cli_env['PATH']}"}


def paste(line: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """The printed command, run by bash exactly as printed."""
    assert line.startswith("ganrun "), line
    return subprocess.run(["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_sweep_job_dirs_name_only_what_varies(ganrun, tmp_path, shell):
    sweep = tmp_path / "sweep"
    out = ganrun("train", "-m", *RING, "logger.progress=none", "trainer.max_steps=2", "seed=0,1",
                 "optimizer.betas=[0.5,0.9]", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_seed-0", "1_seed-1"], jobs
    # the full overrides are kept in the job's files
    saved = yaml.safe_load((sweep / "0_seed-0" / ".hydra" / "overrides.yaml").read_text())
    assert "optimizer.betas=[0.5,0.9]" in saved and "trainer.max_steps=2" in saved and "seed=0" in saved
    # a job dir goes back in without quoting
    again = ganrun("train", f"trainer.resume={sweep / '1_seed-1'}", "trainer.max_steps=3", "logger.progress=none",
                   f"hydra.run.dir={tmp_path / 'more'}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert torch.load(tmp_path / "more" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3


def test_resume_line_after_sigint_pastes_back(tmp_path, shell):
    run = tmp_path / ODD
    args = ["train", *RING, "trainer.max_steps=40", "trainer.log_every=1", "logger.progress=plain",
            "trainer.checkpoint_every=5", override("hydra.run.dir", str(run))]
    proc = subprocess.Popen([sys.executable, "-m", "ganrun", *args], cwd=tmp_path, env=shell,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # wait for training to be under way
        if re.match(r"step [3-9]/", line) or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    printed = err.strip().splitlines()[-1]
    assert "resume with: " in printed, printed
    command = printed.split("resume with: ", 1)[1]
    r = paste(command, shell, tmp_path)
    assert r.returncode == 0, f"{command}\n{r.stderr[-3000:]}"
    assert "resuming at" in r.stdout
    # it continued the interrupted run (the same checkpoint) into a run dir of its own
    new_dir = Path(re.search(r"run dir (.+)$", r.stdout.splitlines()[0])[1])
    assert torch.load(new_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 40


@pytest.mark.slow  # kept out of the fast suite for time; `make test-full` runs it
def test_divergence_hint_and_run_dir_refusal_paste_back(ganrun, tmp_path, shell):
    run = tmp_path / ODD
    first = ganrun("train", *RING, "logger.progress=plain", "trainer.max_steps=3", override("hydra.run.dir", str(run)))
    assert first.returncode == 0, first.stderr[-3000:]
    out = ganrun("train", override("trainer.resume", str(run)), "trainer.max_steps=40", "optimizer.lr=1e30",
                 f"hydra.run.dir={tmp_path / 'diverged'}")
    assert out.returncode == 2, out.stderr
    hint = out.stderr.strip().splitlines()[-1]
    assert "with a lower rate: " in hint, hint
    command = hint.split("with a lower rate: ", 1)[1]
    r = paste(command, shell, tmp_path)
    assert "cannot parse" not in r.stderr and "resuming at 3" in r.stdout, f"{command}\n{r.stdout}\n{r.stderr}"

    # training into a dir that holds a run: the refusal names the command that continues it
    refused = ganrun("train", *RING, "logger.progress=plain", "trainer.max_steps=2", override("hydra.run.dir", str(run)))
    assert refused.returncode == 2
    suggestion = re.search(r"continue that run in place with (.+)$", refused.stderr.strip())[1]
    line = f"ganrun train {suggestion} {override('hydra.run.dir', str(run)).join(chr(34) * 2)}"
    r = paste(line, shell, tmp_path)
    assert "cannot parse" not in r.stderr and "resuming at" in r.stdout, f"{line}\n{r.stdout}\n{r.stderr}"
