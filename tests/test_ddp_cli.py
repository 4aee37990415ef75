"""One run on two gloo processes from the CLI: parity with one process, kill -9, SIGINT and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, make_idx_dataset

# WGAN-GP: gradient penalty (double backward), 5 critic steps, LayerNorm critic; its DCGAN generator has
# BatchNorm, so sync_bn makes the two ranks normalize over the global batch as one process does
PARITY = ["model=wgan_gp", "model.sync_bn=true", "model.ngf=8", "model.ndf=8", "dataset=fashion_mnist",
          "dataset.image_size=32", "trainer.batch_size=8", "trainer.max_steps=3", "trainer.sample_every=0",
          "logger.tensorboard=false", *FAST]
RING = ["dataset=ring8", "dataset.num_points=2000", "trainer.batch_size=32", "trainer.max_steps=100000",
        *FAST, "trainer.checkpoint_every=20", "trainer.sample_every=0", "logger.tensorboard=false"]


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_processes_train_the_weights_of_one_process(ganrun, tmp_path):
    """Global batch 8 on 2 ranks (4 each) vs 8 on 1: same data, same noise, same weights after 3 steps."""
    root = make_idx_dataset(tmp_path / "fashion", n_train=64, n_test=32)
    runs = {}
    for n in (1, 2):
        r = ganrun("train", *PARITY, f"dataset.root={root}", f"trainer.devices={n}", f"hydra.run.dir=run{n}")
        assert r.returncode == 0, r.stderr
        runs[n] = torch.load(tmp_path / f"run{n}/checkpoints/last.pt", weights_only=True)
    assert "2 × cpu (gloo), batch 8 = 2 × 4 per rank" in r.stdout
    assert r.stdout.count("| run dir ") == 1 and r.stdout.count("done: 3 steps") == 1  # rank 0 alone speaks
    assert runs[2]["step"] == 3
    from ganrun.sweeps.record import read_result
    from ganrun.train import checkpoint_schema

    assert checkpoint_schema.check(runs[2]) is None  # plain (unwrapped) state, as one process writes it
    result = read_result(tmp_path / "run2")  # the job's verdict, from rank 0's tracker
    assert result["status"] == "done" and result["step"] == 3 and result["images_seen"] == 3 * 5 * 8, result
    g, d = _max_abs_diff(runs[1]["G"], runs[2]["G"]), _max_abs_diff(runs[1]["D"], runs[2]["D"])
    print(f"1 vs 2 processes after 3 steps (15 critic steps): max |ΔG| = {g:.3g}, max |ΔD| = {d:.3g}")
    assert g < 1e-5 and d < 1e-5
    # the checkpoint of the 2-process run holds plain weights: `ganrun sample` loads it on one CPU
    r = ganrun("sample", "checkpoint=run2", "device=cpu", "n=4", "out=grid.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "grid.png").is_file()


def _start(args, cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganrun", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run ended before {path} appeared: {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail(f"{path} did not appear in {timeout} s")
        time.sleep(0.1)


def _rank_pid(parent: int, rank: int) -> int:
    """The spawned rank's pid: a child of the job process whose environment says RANK=<rank>."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in env:
            return int(pid)
    raise AssertionError(f"no rank {rank} among {children}")


@pytest.mark.slow
def test_kill_9_of_one_rank_ends_the_run_with_a_clear_message_and_the_checkpoint_intact(ganrun, tmp_path, cli_env):
    proc = _start(["train", *RING, "trainer.devices=2", "hydra.run.dir=run"], tmp_path, cli_env)
    last = tmp_path / "run/checkpoints/last.pt"
    _wait_for(last, proc)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("ganrun:")]
    assert len(lines) == 1, err
    assert "rank 1 of 2" in lines[0] and "was killed by SIGKILL" in lines[0]
    assert f"the last checkpoint {last} is intact; resume with: ganrun train trainer.resume=" in lines[0]
    assert "Traceback" not in err
    from ganrun.train.checkpoint import load_checkpoint

    step = load_checkpoint(last)["step"]
    assert step % 20 == 0 and step > 0
    # resume on one process (a different count), to a step just past the checkpoint
    r = ganrun("train", f"trainer.resume={tmp_path / 'run'}", "hydra.run.dir=run", "trainer.devices=1",
               f"trainer.max_steps={step + 5}")
    assert r.returncode == 0, r.stderr
    assert f"resuming at {step:,}" in r.stdout
    assert load_checkpoint(last)["step"] == step + 5


@pytest.mark.slow
def test_sigint_stops_both_ranks_with_one_checkpoint_and_the_run_resumes(ganrun, tmp_path, cli_env):
    args = [a for a in RING if not a.startswith("trainer.max_steps")]
    proc = _start(["train", *args, "trainer.max_steps=400", "trainer.devices=2", "hydra.run.dir=run"],
                  tmp_path, cli_env)
    last = tmp_path / "run/checkpoints/last.pt"
    _wait_for(last, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("ganrun: stopped")]
    assert len(lines) == 1 and "stopped by SIGINT after step" in lines[0], err
    from ganrun.train.checkpoint import load_checkpoint

    stopped_at = int(lines[0].split("after step ")[1].split(";")[0].replace(",", ""))
    assert load_checkpoint(last)["step"] == stopped_at < 400
    r = ganrun("train", f"trainer.resume={tmp_path / 'run'}", "hydra.run.dir=run", "trainer.devices=2")
    assert r.returncode == 0, r.stderr
    assert f"resuming at {stopped_at:,}" in r.stdout
    assert load_checkpoint(last)["step"] == 400


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank(tmp_path, cli_env):
    proc = _start(["train", *RING, "trainer.devices=2", "hydra.run.dir=run"], tmp_path, cli_env)
    _wait_for(tmp_path / "run/checkpoints/last.pt", proc)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM after step" in err


@pytest.mark.slow
def test_torchrun_trains_one_run_on_its_processes(tmp_path, cli_env):
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "ganrun", "train",
                        *RING, "trainer.max_steps=30", "trainer.devices=2", "hydra.run.dir=run"],
                       cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("2 × cpu (gloo), batch 32 = 2 × 16 per rank") == 1  # rank 0 alone speaks
    from ganrun.sweeps.record import read_result
    from ganrun.train.checkpoint import load_checkpoint

    assert read_result(tmp_path / "run")["status"] == "done" and load_checkpoint(tmp_path / "run")["step"] == 30
    assert (tmp_path / "run/.hydra/config.yaml").is_file()


def test_torchrun_needs_a_fixed_run_dir(ganrun, cli_env):
    env = {**cli_env, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    r = ganrun("train", "dataset=ring8", "device=cpu", env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == ("ganrun: error: under torchrun every rank runs Hydra, and the default run dir "
                                "(a time stamp) differs per rank: pass a fixed hydra.run.dir=<dir>")


@pytest.mark.slow
def test_resume_auto_starts_fresh_then_continues_in_place(ganrun, tmp_path):
    args = ["train", "dataset=ring8", "dataset.num_points=500", "trainer.batch_size=16", *FAST,
            "logger.tensorboard=false", "trainer.resume=auto", "hydra.run.dir=run"]
    r = ganrun(*args, "trainer.max_steps=10")
    assert r.returncode == 0, r.stderr
    assert "resuming" not in r.stdout
    r = ganrun(*args, "trainer.max_steps=20")  # the same command, requeued: it finds its own last.pt
    assert r.returncode == 0, r.stderr
    assert "resuming at 10" in r.stdout
    from ganrun.train.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "run")["step"] == 20
