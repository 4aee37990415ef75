"""Crash consistency and signals in every phase (issue 14, classes 2 and 3).

- kill -9 *inside* a checkpoint write (the test hook GANRUN_TEST_STALL_WRITE stalls the writer at a
  random byte of the Nth atomic write and says so on stderr), for the first checkpoint and later
  ones; then the run is continued in place, and its final state equals an uninterrupted run's, bit
  for bit; the killed write's temp file is removed at the restart.
- A kill between step_N.pt and last.pt, or a damaged last.pt: the resume takes the newest
  checkpoint that verifies.
- SIGTERM in each phase, timed (a generous bound: these are fault tests on a shared machine):
  start-up, data loading, the sample grid, the feature-network fit of the first evaluation, a
  later evaluation, `ganrun sample`, and a checkpoint write; SIGINT twice inside a write. Always the
  documented exit code (128 + signal), one line per signal, no traceback, no temp file, the newest
  checkpoint whole. The phases are reached with GANRUN_TEST_PHASE (say when a phase starts, and wait
  there) or, for start-up, by waiting until the process catches SIGTERM (/proc/<pid>/status).
Runs go through `cli_fork.ForkServer` (the real `ganrun.cli.main` in a fresh forked process); one
kill and one signal case run `python -m ganrun` itself.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import torch

from tests.cli_fork import ForkServer
from tests.conftest import make_idx_dataset
from tests.test_faults import Live, assert_same_training_state, env, load

STEPS = 30
BASE = ["dataset=ring8", "dataset.num_points=1000", "device=cpu", "device.deterministic=true",
        "logger.print_config=false", "logger.progress=plain", "logger.tensorboard=false",
        "trainer.batch_size=32", "trainer.ema_decay=0.9", f"trainer.max_steps={STEPS}", "trainer.log_every=1",
        "trainer.sample_every=0", "trainer.checkpoint_every=10", "trainer.keep_last=1"]
BOUND = 15.0  # seconds from the signal to the exit
SEED = 14  # the random byte offsets and write numbers below; change it to try other points


@pytest.fixture(scope="module")
def cli():
    server = ForkServer(env())
    yield server
    server.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cli) -> dict:
    tmp = tmp_path_factory.mktemp("reference")
    r = cli.run(["train", *BASE, f"hydra.run.dir={tmp / 'run'}"], tmp)
    assert r.returncode == 0, r.stderr
    return load(tmp / "run" / "checkpoints" / "last.pt")


def wait_until(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def catches_sigterm(pid: int) -> bool:
    """True once the process has installed a SIGTERM handler (bit 15 of SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def temp_files(run: Path) -> list[Path]:
    return [p for p in (run / "checkpoints").glob(".*")] if (run / "checkpoints").exists() else []


def one_line_per_signal(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.strip().splitlines() if not line.startswith("ganrun-test:")]


# -- kill -9 inside checkpoint writes, then resume in place ---------------------------------------------

WRITES = {"the first checkpoint (step_0000010.pt)": 1, "the first last.pt": 2,
          "a later step file": 3, "a later last.pt": 6}  # atomic writes: step_10, last, step_20, last, ...


@pytest.mark.parametrize("which", [
    pytest.param("the first checkpoint (step_0000010.pt)", id="first-step-file"),
    pytest.param("the first last.pt", id="first-last", marks=pytest.mark.slow),
    pytest.param("a later step file", id="later-step-file", marks=pytest.mark.slow),
    pytest.param("a later last.pt", id="later-last"),
])
def test_kill_9_inside_a_checkpoint_write_then_continue_in_place(which, reference, tmp_path, cli):
    nth = WRITES[which]
    at = random.Random(f"{SEED}-{nth}").randrange(0, 4_000_000)  # a checkpoint here is about 10 MB
    run = tmp_path / "run"
    args = ["train", *BASE, f"hydra.run.dir={run}"]
    job = cli.start(args, tmp_path, env={"GANRUN_TEST_STALL_WRITE": f"{at}:60:{nth}"})
    wait_until(lambda: "ganrun-test: stalling the write" in job.stderr() or job.poll() is not None, what="the stall")
    assert job.poll() is None, job.stderr()
    assert temp_files(run), "the write in progress has a temp file"
    import os

    os.kill(job.pid, signal.SIGKILL)
    assert job.wait().returncode == -signal.SIGKILL
    assert temp_files(run), "kill -9 leaves the temp file (nothing can remove it then)"
    whole = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    for name in whole:  # every checkpoint file there is whole
        load(run / "checkpoints" / name)

    if whole:  # continue in place from the newest checkpoint that verifies
        r = cli.run(["train", f"trainer.resume={run}", f"hydra.run.dir={run}"], tmp_path)
    else:  # killed inside the first write: no checkpoint yet, so the same command starts it again in place
        r = cli.run(args, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "removed 1 temp file(s) left by interrupted checkpoint writes" in r.stderr, r.stderr
    assert not temp_files(run)
    assert_same_training_state(load(run / "checkpoints" / "last.pt"), reference)


def test_kill_9_inside_a_write_of_python_m_ganrun_leaves_the_previous_checkpoint(tmp_path):
    """The same through the real entry point: the stalled write is of last.pt, the one before stays whole."""
    run = tmp_path / "run"
    e = {"GANRUN_TEST_STALL_WRITE": f"{random.Random(SEED).randrange(0, 4_000_000)}:60:4"}
    live = Live(["train", *BASE, f"hydra.run.dir={run}"], tmp_path, extra_env=e)
    live.wait_for(live.err, lambda line: line.startswith("ganrun-test: stalling"))
    before = load(run / "checkpoints" / "last.pt")
    live.proc.kill()
    assert live.finish()[0] == -signal.SIGKILL
    assert load(run / "checkpoints" / "last.pt")["step"] == before["step"] == 10
    assert [p.name for p in temp_files(run)][0].startswith(".last.pt.")


def test_resume_takes_the_newest_checkpoint_that_verifies(tmp_path, cli):
    run = tmp_path / "run"
    r = cli.run(["train", *BASE, "trainer.max_steps=20", "trainer.keep_last=2", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr
    ckpts = run / "checkpoints"
    # as after a kill between step_0000020.pt and last.pt: last.pt still holds step 10
    (ckpts / "last.pt").write_bytes((ckpts / "step_0000010.pt").read_bytes())
    r = cli.run(["train", f"trainer.resume={run}", f"hydra.run.dir={run}", "trainer.max_steps=21"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(resuming at 20)" in r.stdout
    # a damaged last.pt (a flipped byte) is passed over with a warning naming it
    raw = bytearray((ckpts / "last.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (ckpts / "last.pt").write_bytes(bytes(raw))
    r = cli.run(["train", f"trainer.resume={run}", f"hydra.run.dir={run}", "trainer.max_steps=22"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(resuming at 20)" in r.stdout
    assert "resuming from step_0000020.pt; passed over: last.pt (" in r.stderr, r.stderr


# -- SIGTERM in every phase -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("idx"), n_train=256, n_test=320)


def signalled(cli, args, cwd: Path, sig: int, *, hook: dict | None = None, marker: str | None = None):
    """Start ganrun, wait for the phase (a test-hook marker, or the handler being installed), signal it;
    return (exit code, stderr lines, seconds from the signal to the exit)."""
    job = cli.start(args, cwd, env=hook)
    if marker:
        wait_until(lambda: marker in job.stderr() or job.poll() is not None, what=marker)
    else:
        wait_until(lambda: catches_sigterm(job.pid) or job.poll() is not None, what="the handler")
    assert job.poll() is None, job.stderr()
    import os

    sent = time.monotonic()
    os.kill(job.pid, sig)
    r = job.wait(timeout=120)
    return r.returncode, one_line_per_signal(r.stderr), time.monotonic() - sent


EVAL = ["dataset=fashion_mnist", "device=cpu", "logger.print_config=false", "logger.progress=none",
        "logger.tensorboard=false", "trainer.batch_size=16", "trainer.sample_every=0", "trainer.log_every=1",
        "trainer.checkpoint_every=1", "trainer.max_steps=100000", "eval.num_samples=320", "eval.every=2"]
LONG = [*BASE[:-6], "trainer.max_steps=100000", "trainer.log_every=1", "trainer.checkpoint_every=10"]

PHASES = {  # name: (args after "train", test-hook env, stderr marker (None: the handler), the last line)
    "start-up": (LONG, {}, None, r"stopped by SIGTERM during (start-up|data loading)"),
    "data-loading": (LONG, {"GANRUN_TEST_PHASE": "data loading:60"}, "ganrun-test: phase data loading",
                     r"stopped by SIGTERM during data loading \(start-up: no new checkpoint was written\)"),
    "sample-grid": ([*LONG, "trainer.sample_every=5"], {"GANRUN_TEST_PHASE": "the sample grid:60:2"},
                    "ganrun-test: phase the sample grid", r"stopped by SIGTERM after step 5; checkpoint \S+last\.pt"),
    # the real fit, made long (many epochs): the marker says when it starts, nothing stalls it
    "feature-fit": ([*EVAL, "eval.classifier_epochs=1000"], {"GANRUN_TEST_PHASE": "fitting the feature network:0"},
                    "ganrun-test: phase the first evaluation", r"stopped by SIGTERM after step 2; checkpoint \S+last\.pt"),
    "evaluation": ([*EVAL, "eval.classifier_epochs=1"], {"GANRUN_TEST_PHASE": "the evaluation:60"}, "ganrun-test: phase the evaluation\n",
                   r"stopped by SIGTERM after step 4; checkpoint \S+last\.pt"),
    # the first signal waits for the write in progress (last.pt at step 10, stalled 3 s), then one step
    "checkpoint-write": (LONG, {"GANRUN_TEST_STALL_WRITE": "1000:3:2"}, "ganrun-test: stalling the write",
                         r"stopped by SIGTERM after step 11; checkpoint \S+last\.pt; resume with"),
}


@pytest.mark.parametrize("name", list(PHASES))
def test_sigterm_in_each_phase_exits_143_with_one_line_within_seconds(name, tmp_path, cli, idx):
    import re

    args, hook, marker, said = PHASES[name]
    run = tmp_path / "run"
    data = [f"dataset.root={idx}", f"eval.cache_dir={tmp_path / 'cache'}"] if EVAL[0] in args else []
    rc, lines, took = signalled(cli, ["train", *args, *data, f"hydra.run.dir={run}"], tmp_path, signal.SIGTERM,
                                hook=hook, marker=marker)
    assert rc == 143, lines
    assert took < BOUND, took
    assert re.search(said, lines[-1]), lines
    ours = [line for line in lines if line.startswith("ganrun: ")]  # the rest: the run's own console lines
    assert lines[-1] == ours[-1] and len(ours) <= 2, lines
    assert not temp_files(run)
    for ckpt in (run / "checkpoints").glob("*.pt") if (run / "checkpoints").exists() else []:
        load(ckpt)  # whole


def test_sigterm_while_sampling(tmp_path, cli):
    run = tmp_path / "run"
    r = cli.run(["train", *BASE, "trainer.max_steps=2", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr
    rc, lines, took = signalled(cli, ["sample", f"checkpoint={run}", "n=64"], tmp_path, signal.SIGTERM)
    assert rc == 143 and took < BOUND, (rc, lines)
    assert lines == ["ganrun: stopped by SIGTERM during sampling (no image was written)"], lines


def test_second_sigint_inside_a_checkpoint_write_quits_at_once_without_a_traceback(tmp_path):
    """Through `python -m ganrun`: the first SIGINT waits for the stalled write of last.pt, the second ends it."""
    run = tmp_path / "run"
    live = Live(["train", *BASE, f"hydra.run.dir={run}"], tmp_path, extra_env={"GANRUN_TEST_STALL_WRITE": "5000:60:4"})
    live.wait_for(live.err, lambda line: line.startswith("ganrun-test: stalling"))
    live.proc.send_signal(signal.SIGINT)
    live.wait_for(live.err, lambda line: "received: finishing this step" in line)
    sent = time.monotonic()
    live.proc.send_signal(signal.SIGINT)
    rc, out, err = live.finish()
    assert rc == 130 and time.monotonic() - sent < BOUND, err
    lines = one_line_per_signal(out + err)
    assert lines[-1] == "ganrun: SIGINT received again: quit at once without a new checkpoint", lines
    assert not temp_files(run)
    assert load(run / "checkpoints" / "last.pt")["step"] == 10  # the newest checkpoint, whole
