"""Fault injection: runs killed, interrupted, out of disk, diverging, or racing each other.

The user-facing cases run the real CLI in subprocesses: `python -m ganrun train ...` for the kills
and signals, forked children of `cli_fork.ForkServer` (which runs the same `ganrun.cli.main`
without importing torch again) for the rest:
- SIGKILL at a random step, then `trainer.resume=<run dir>` (in place): the final G, D, G_ema,
  optimizer and data-order state equal an uninterrupted run's, bit for bit (CPU, deterministic);
- SIGINT and SIGTERM: the step finishes, a checkpoint is written, the resume command is printed,
  exit 130/143 within seconds; resuming with that command (into a new run dir) is bit-identical;
  a second signal quits at once;
- a full disk (RLIMIT_FSIZE makes the write fail as ENOSPC would), with and without an earlier
  checkpoint: one line, exit 2, no temp file, the earlier checkpoint intact;
- NaN: a fresh run and a resumed one diverge; the message names the loss and the steps; no
  diverged checkpoint is written and the last good one is untouched;
- trainer.keep_last; two runs started at the same moment; a sweep writes only in its job dirs.
In-process: checkpoints truncated at many offsets or with flipped bytes, a pickle that would
create a file (the test shows it does when unpickled unsafely, and that ganrun never runs it), a
writer killed mid-write, concurrent atomic writers, the loop's NaN guard, the signal handler.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.cli_fork import ForkServer
from tests.conftest import make_image_folder, subprocess_env

STEPS = 80
BASE = ["dataset=ring8", "dataset.num_points=1000", "device=cpu", "device.deterministic=true",
        "logger.print_config=false", "logger.progress=plain", "logger.tensorboard=false",
        "trainer.batch_size=32", "trainer.n_critic=2", "trainer.ema_decay=0.9", f"trainer.max_steps={STEPS}",
        "trainer.log_every=1", "trainer.sample_every=0", "trainer.checkpoint_every=10", "trainer.keep_last=1"]
QUICK = ["dataset=ring8", "device=cpu", "logger.print_config=false", "logger.progress=none",
         "logger.tensorboard=false", "trainer.batch_size=16", "trainer.sample_every=0", "trainer.log_every=5"]
STEP_LINE = re.compile(r"step (\d+)/")


env = subprocess_env  # the environment of the `python -m ganrun` these tests start


@pytest.fixture(scope="module")
def cli():
    """`cli.run(args, cwd)`: ganrun in a forked child (see cli_fork); `cli.start` for concurrent runs."""
    server = ForkServer(env())
    yield server
    server.close()


class Live:
    """A `ganrun` process whose stdout and stderr lines are read as they come."""

    def __init__(self, args, cwd: Path, extra_env: dict | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "ganrun", *map(str, args)], cwd=cwd,
                                     env={**env(), **(extra_env or {})},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: queue.Queue = queue.Queue()
        self.err: queue.Queue = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._pumps = [threading.Thread(target=self._pump, args=(s, q, keep), daemon=True)
                       for s, q, keep in ((self.proc.stdout, self.out, self.stdout),
                                          (self.proc.stderr, self.err, self.stderr))]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream, q: queue.Queue, keep: list) -> None:
        for line in stream:
            keep.append(line)
            q.put(line)
        q.put(None)

    def wait_for(self, q: queue.Queue, match, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while True:
            line = q.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"the run ended first:\n{''.join(self.stdout)}\n{''.join(self.stderr)}")
            found = match(line)
            if found:
                return found

    def wait_for_step(self, k: int) -> int:
        return self.wait_for(self.out, lambda line: (m := STEP_LINE.match(line)) and int(m[1]) >= k and int(m[1]))

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        rc = self.proc.wait(timeout=timeout)
        for pump in self._pumps:
            pump.join(timeout=10)
        return rc, "".join(self.stdout), "".join(self.stderr)


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def assert_same(a, b, where: str = "checkpoint") -> None:
    """Bit-identical nested state: tensors with torch.equal, everything else with ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(resumed: dict, reference: dict) -> None:
    for key in ("step", "nimg", "G", "D", "G_ema", "opt_G", "opt_D", "rng", "fixed_z"):
        assert_same(resumed[key], reference[key], key)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cli) -> dict:
    """The uninterrupted run every interrupted-and-resumed run must match."""
    tmp = tmp_path_factory.mktemp("reference")
    r = cli.run(["train", *BASE, f"hydra.run.dir={tmp / 'run'}"], tmp)
    assert r.returncode == 0, r.stderr
    return load(tmp / "run" / "checkpoints" / "last.pt")


# -- kill -9, SIGINT, SIGTERM ---------------------------------------------------------------------

def test_sigkill_at_a_random_step_then_resume_in_place_is_bit_identical(reference, tmp_path, cli):
    run = tmp_path / "run"
    k = random.randint(15, STEPS - 20)
    live = Live(["train", *BASE, f"hydra.run.dir={run}"], tmp_path)
    live.wait_for_step(k)
    live.proc.kill()
    rc, _, _ = live.finish()
    assert rc == -signal.SIGKILL
    killed = load(run / "checkpoints" / "last.pt")  # whole, even if the kill hit a write
    assert killed["step"] % 10 == 0 and killed["step"] >= 10 * (k // 10), (k, killed["step"])
    hydra_before = files(run / ".hydra")

    r = cli.run(["train", f"trainer.resume={run}", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"(resuming at {killed['step']})" in r.stdout
    assert_same_training_state(load(run / "checkpoints" / "last.pt"), reference)
    hydra_after = files(run / ".hydra")
    assert {name: hydra_after[name] for name in hydra_before} == hydra_before  # the run's own config kept
    assert [name for name in hydra_after if name not in hydra_before][0].startswith("resume-")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", f"step_{STEPS:07d}.pt"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_checkpoints_prints_resume_and_resume_is_bit_identical(sig, reference, tmp_path, cli):
    name = signal.Signals(sig).name
    run = tmp_path / "run"
    k = random.randint(5, STEPS - 20)
    live = Live(["train", *BASE, f"hydra.run.dir={run}"], tmp_path)
    live.wait_for_step(k)
    sent = time.monotonic()
    live.proc.send_signal(sig)
    rc, out, err = live.finish()
    took = time.monotonic() - sent
    assert rc == 128 + sig, err
    assert took < 20, took  # "within a few seconds" (most of it is interpreter shutdown; slack for a busy machine)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert lines[0] == (f"ganrun: {name} received: finishing this step and writing a checkpoint "
                        "(send it again to quit at once)")
    m = re.fullmatch(rf"ganrun: stopped by {name} after step (\d+); checkpoint (\S+); resume with: "
                     r"ganrun train trainer.resume=(\S+)", lines[-1])
    assert m, lines[-1]
    stopped_at, checkpoint, resume = int(m[1]), Path(m[2]), Path(m[3])
    assert k <= stopped_at < STEPS and checkpoint == run / "checkpoints" / "last.pt" and resume == run
    assert load(checkpoint)["step"] == stopped_at
    assert not list((run / "checkpoints").glob(".*"))  # no temp files

    if sig == signal.SIGTERM:
        return  # the same code path as SIGINT from here on; one resume check is enough
    # the printed command, as a user types it: continues in a new run dir, the old one untouched
    before = files(run)
    r = cli.run(["train", f"trainer.resume={resume}"], tmp_path)
    assert r.returncode == 0, r.stderr
    (new_last,) = (tmp_path / "outputs").glob("*/*/checkpoints/last.pt")
    assert_same_training_state(load(new_last), reference)
    assert files(run) == before


def test_second_signal_quits_at_once(tmp_path):
    # a model whose checkpoint write takes a while (32x32 RGB MLP: ~70 MB), so the second signal
    # lands while the first one's checkpoint is being written
    root = make_image_folder(tmp_path / "images", per_class=8, size=32)
    run = tmp_path / "run"
    live = Live(["train", "dataset=folder", f"dataset.root={root}", "dataset.image_size=32", "device=cpu",
                 "logger.print_config=false", "logger.progress=plain", "logger.tensorboard=false",
                 "trainer.batch_size=8", "trainer.max_steps=100000", "trainer.log_every=1",
                 "trainer.sample_every=0", "trainer.checkpoint_every=100000", f"hydra.run.dir={run}"], tmp_path)
    live.wait_for_step(3)
    live.proc.send_signal(signal.SIGINT)
    live.wait_for(live.err, lambda line: "received: finishing this step" in line)
    if live.proc.poll() is not None:
        pytest.skip("the run had already stopped cleanly before the second signal")
    sent = time.monotonic()
    live.proc.send_signal(signal.SIGINT)
    rc, out, err = live.finish()
    took = time.monotonic() - sent
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == "ganrun: SIGINT received again: quit at once without a new checkpoint"
    assert "Traceback" not in out + err
    assert took < 10, took
    left = list((run / "checkpoints").iterdir()) if (run / "checkpoints").exists() else []
    assert not [p for p in left if p.name.startswith(".")], left  # the abandoned write left no temp file


def test_signal_handler_first_sets_the_flag_second_raises(monkeypatch):
    from ganrun.errors import Interrupted
    from ganrun.train.signals import StopOnSignal

    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop() and stop.name == "SIGTERM"
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert info.value.exit_code == 130
    assert signal.getsignal(signal.SIGTERM) is before


# -- NaN --------------------------------------------------------------------------------------------

def test_nan_in_a_fresh_run_stops_with_the_step_and_writes_no_checkpoint(tmp_path, cli):
    run = tmp_path / "run"
    r = cli.run(["train", *QUICK, "trainer.max_steps=40", "trainer.checkpoint_every=3", "optimizer.lr=1e30",
                f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert re.fullmatch(r"ganrun: error: (loss|grad_norm)/[DG] became (nan|inf) between step 1 and step [1-3]; "
                        r"training stopped and no checkpoint was written\. Lower optimizer\.lr.*", line), line
    assert not list((run / "checkpoints").glob("*")) if (run / "checkpoints").exists() else True


def test_nan_after_resume_names_loss_and_step_and_keeps_the_good_checkpoint(tmp_path, cli):
    run = tmp_path / "run"
    r = cli.run(["train", *QUICK, "trainer.max_steps=20", "trainer.checkpoint_every=10", f"hydra.run.dir={run}"],
               tmp_path)
    assert r.returncode == 0, r.stderr
    good = files(run / "checkpoints")
    # continue the same run in place with a learning rate that blows up at once
    r = cli.run(["train", f"trainer.resume={run}", f"hydra.run.dir={run}", "trainer.max_steps=40",
                 "optimizer.lr=1e30"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert re.fullmatch(r"ganrun: error: loss/[DG] became (nan|inf) between step 21 and step 2[1-5]; training "
                        r"stopped and the last checkpoint \(step 20\) was kept untouched\. .*; to go on from "
                        r"\S+/checkpoints/last\.pt with a lower rate: ganrun train trainer\.resume=\S+ "
                        r"optimizer\.lr=1e\+29", line), line
    assert files(run / "checkpoints") == good


def test_loop_checks_before_every_checkpoint_and_never_saves_a_diverged_state():
    from ganrun.train.loop import Schedule, TrainingDiverged, train_loop
    from ganrun.observe.stats import Stats

    class Jobs:
        def __init__(self):
            self.saved, self.logged = [], []

        def log(self, step, values):
            self.logged.append(step)

        def samples(self, step):
            pass

        def evaluate(self, step, nimg):
            return None

        def checkpoint(self, step, nimg):
            self.saved.append(step)

    def step_fn(batches, step):  # diverges in step index 13 (the 14th step)
        return {"loss/D": torch.tensor(float("nan") if step == 13 else 1.0), "grad_norm/G": torch.tensor(1.0)}

    step_fn.batches_per_step = 0

    jobs = Jobs()
    # log_every=50 would not look until step 50; the checkpoint due at step 15 forces a check first
    with pytest.raises(TrainingDiverged, match=r"loss/D became nan between step 11 and step 15; training stopped "
                                               r"and the last checkpoint \(step 10\) was kept untouched"):
        train_loop(step_fn, lambda: None, Stats(), Schedule(100, 50, 0, 5, 0), jobs, start_step=0, start_nimg=0,
                   images_per_batch=1, progress=lambda s: None, should_stop=lambda: False)
    assert jobs.saved == [5, 10]


# -- disk, keep_last ----------------------------------------------------------------------------------

FULL = 1_000_000  # RLIMIT_FSIZE in bytes: a write past it fails (EFBIG) as on a full disk; a checkpoint is ~10 MB


def test_full_disk_is_one_line_leaves_no_partial_file_and_keeps_the_previous_checkpoint(tmp_path, cli):
    run = tmp_path / "run"
    r = cli.run(["train", *QUICK, "trainer.max_steps=10", "trainer.checkpoint_every=10", "trainer.keep_last=0",
                 f"hydra.run.dir={run}"], tmp_path, fsize=FULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr  # a fresh run: nothing to keep
    assert re.fullmatch(r"ganrun: error: cannot write checkpoint \S+/checkpoints/last\.pt: File too large; "
                        r"free disk space or choose a writable hydra\.run\.dir.*", r.stderr.strip()), r.stderr
    assert list((run / "checkpoints").iterdir()) == []  # the temp file is gone, nothing half-written

    run = tmp_path / "run2"
    r = cli.run(["train", *QUICK, "trainer.max_steps=10", "trainer.checkpoint_every=10", "trainer.keep_last=0",
                 f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr
    before = files(run / "checkpoints")
    assert list(before) == ["last.pt"]  # keep_last=0: no step files
    r = cli.run(["train", f"trainer.resume={run}", f"hydra.run.dir={run}", "trainer.max_steps=20"], tmp_path,
                fsize=FULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert re.fullmatch(r"ganrun: error: cannot write checkpoint \S+/checkpoints/last\.pt: File too large; .*"
                        r"\(the previous checkpoint, if any, is intact\)", r.stderr.strip()), r.stderr
    assert files(run / "checkpoints") == before
    assert load(run / "checkpoints" / "last.pt")["step"] == 10


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_unwritable_run_dir_is_one_line(tmp_path, cli):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    r = cli.run(["train", *QUICK, "trainer.max_steps=2", f"hydra.run.dir={locked / 'run'}"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert re.fullmatch(r"ganrun: error: hydra\.run\.dir=\S+ is not writable \(no write permission on \S+locked\); .*",
                        r.stderr.strip())


def test_keep_last_keeps_the_newest_k_step_files_plus_last_and_best(tmp_path, cli):
    run = tmp_path / "run"
    r = cli.run(["train", *QUICK, "trainer.max_steps=50", "trainer.checkpoint_every=10", "trainer.keep_last=2",
                f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr
    names = lambda: sorted(p.name for p in (run / "checkpoints").iterdir())  # noqa: E731
    assert names() == ["last.pt", "step_0000040.pt", "step_0000050.pt"]
    best = run / "checkpoints" / "best.pt"
    best.write_bytes((run / "checkpoints" / "step_0000040.pt").read_bytes())  # as an evaluation would keep it
    # continue in place: the first segment's step files count against keep_last, best.pt never does
    r = cli.run(["train", f"trainer.resume={run}", f"hydra.run.dir={run}", "trainer.max_steps=75"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert names() == ["best.pt", "last.pt", "step_0000060.pt", "step_0000070.pt"]
    assert load(run / "checkpoints" / "last.pt")["step"] == 75  # the end always saves last.pt


# -- checkpoint files: truncated, corrupted, pickled code, killed writers -------------------------------

@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory, reference) -> bytes:
    from ganrun.train.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, {k: v for k, v in reference.items() if k != "format_version"})
    return path.read_bytes()


TRUNCATE_AT = [0, 1, 3, 4, 30, 100, 1000, 0.25, 0.5, 0.75, -4096, -200, -22, -1]  # bytes, fractions, from the end


def test_truncated_checkpoints_are_refused_at_every_offset(tmp_path, checkpoint_bytes):
    from ganrun.errors import UserError
    from ganrun.train.checkpoint import load_checkpoint

    n = len(checkpoint_bytes)
    for at in TRUNCATE_AT:
        cut = int(at * n) if isinstance(at, float) else (n + at if at < 0 else at)
        path = tmp_path / f"cut_{cut}.pt"
        path.write_bytes(checkpoint_bytes[:cut])
        with pytest.raises(UserError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert "\n" not in message and re.match(rf"cannot load checkpoint {re.escape(str(path))}: the file is "
                                                r"(empty|truncated, corrupt)", message), (cut, message)


def test_flipped_bytes_anywhere_are_refused(tmp_path, checkpoint_bytes):
    import zipfile

    from ganrun.errors import UserError
    from ganrun.train.checkpoint import load_checkpoint

    source = tmp_path / "good.pt"
    source.write_bytes(checkpoint_bytes)
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
    pickle_start = infos[0].header_offset + 200  # inside data.pkl (the dict structure)
    tensor = max(infos, key=lambda i: i.file_size)
    places = {"pickle": pickle_start, "tensor": tensor.header_offset + 64 + tensor.file_size // 2,
              "directory": len(checkpoint_bytes) - 100}
    for where, at in places.items():
        raw = bytearray(checkpoint_bytes)
        raw[at : at + 4] = bytes(b ^ 0xA5 for b in raw[at : at + 4])
        path = tmp_path / f"flipped_{where}.pt"
        path.write_bytes(bytes(raw))
        with pytest.raises(UserError, match=r"cannot load checkpoint .*: the file is (truncated, )?corrupt"):
            load_checkpoint(path)


class _Exec:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def test_pickled_code_would_run_if_unpickled_but_ganrun_never_runs_it(tmp_path, checkpoint_bytes):
    from ganrun.errors import UserError
    from ganrun.train.checkpoint import load_checkpoint

    def payload(marker: Path) -> _Exec:
        return _Exec(f"open({str(marker)!r}, 'w').close()")

    good = tmp_path / "good.pt"
    good.write_bytes(checkpoint_bytes)
    state = torch.load(good, weights_only=True)
    for kind in ("zip", "raw"):  # raw: protocol 2, so the restricted unpickler gets as far as the GLOBAL
        armed, control = tmp_path / f"pwned_{kind}", tmp_path / f"control_{kind}"
        evil, probe = tmp_path / f"evil_{kind}.pt", tmp_path / f"probe_{kind}.pt"
        if kind == "zip":  # a real checkpoint with one entry replaced by the payload
            torch.save({**state, "G": payload(armed)}, evil)
            torch.save({**state, "G": payload(control)}, probe)
        else:  # a bare pickle
            evil.write_bytes(pickle.dumps({"G": payload(armed)}, protocol=2))
            probe.write_bytes(pickle.dumps({"G": payload(control)}, protocol=2))
        # the control: an unsafe load of the same kind of file runs the code (a bare pickle then fails
        # torch's magic-number check, too late)
        with pytest.raises(Exception) if kind == "raw" else contextlib.nullcontext():
            torch.load(probe, weights_only=False)
        assert control.exists(), "the crafted file is not dangerous: the test would prove nothing"
        with pytest.raises(UserError, match=r"contains pickled Python objects \(exec\) that ganrun refuses to load"):
            load_checkpoint(evil)
        assert not armed.exists()


WRITER = r"""
import sys, torch
from ganrun.train.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
while True:  # rewrite the same checkpoint, each version consistent with itself, until killed
    i += 1
    save_checkpoint(path, {"step": i, "G": {"w": torch.full((1_000_000,), float(i))}, "D": {"w": torch.zeros(1)},
                           "config": {}, "model_id": {}})
    print(i, flush=True)
"""


def test_a_writer_killed_mid_write_leaves_a_whole_checkpoint(tmp_path):
    from ganrun.train.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env(), stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # one version written; then kill it at a random moment (most of its time is writing)
    time.sleep(random.uniform(0.0, 0.3))
    proc.kill()
    proc.wait()
    from ganrun.train.checkpoint import _check_archive

    _check_archive(path)  # every record's CRC, as load_checkpoint checks it (the fake state has no full schema)
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["G"]["w"], torch.full((1_000_000,), float(state["step"])))


# -- concurrency ---------------------------------------------------------------------------------------

def test_two_runs_started_in_the_same_second_get_their_own_dirs(tmp_path, cli):
    # the worst case: the run dir's time part is dropped, only the random run id tells them apart
    pattern = "hydra.run.dir=outputs/same-second-${ganrun_run_id:}"
    jobs = [cli.start(["train", *QUICK, "trainer.max_steps=3", f"seed={i}", pattern], tmp_path) for i in range(2)]
    for job in jobs:
        r = job.wait()
        assert r.returncode == 0, r.stderr
    dirs = sorted((tmp_path / "outputs").iterdir())
    assert len(dirs) == 2, dirs
    seeds = sorted(load(d / "checkpoints" / "last.pt")["config"]["seed"] for d in dirs)
    assert seeds == [0, 1]


def test_default_run_dirs_are_time_plus_a_random_run_id(tmp_path):
    """Hydra's resolved run dir, as two processes started together see it (no work done)."""
    args = [sys.executable, "-m", "ganrun", "train", "dataset=ring8", "--cfg", "hydra", "--resolve"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, text=True) for _ in range(2)]
    dirs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        dirs.append(re.search(r"^  run:\n    dir: (\S+)$", out, re.M)[1])
    for d in dirs:
        assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-[0-9a-f]{4}", d), d
    assert dirs[0] != dirs[1]
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_writes_only_inside_its_job_dirs(tmp_path, cli):
    cwd, sweep = tmp_path / "cwd", tmp_path / "sweep"
    cwd.mkdir()
    r = cli.run(["train", "-m", *QUICK, "trainer.max_steps=3", "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd)
    assert r.returncode == 0, r.stderr
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "sweep"]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert sorted(p.name for p in sweep.iterdir() if p.is_file()) == [  # Hydra's record and the sweep report
        "multirun.yaml", "report.csv", "report.md", "report.png"]
    assert [p.name.split("_", 1)[0] for p in jobs] == ["0", "1"]
    for i, job in enumerate(jobs):
        assert load(job / "checkpoints" / "last.pt")["config"]["seed"] == i
        assert (job / ".hydra" / "config.yaml").exists()


ATOMIC_WRITER = r"""
import hashlib, os, sys
from ganrun.atomic import atomic_write_bytes
path, tag = sys.argv[1], sys.argv[2].encode()
for i in range(200):
    body = tag * (50_000 + 997 * i)
    atomic_write_bytes(path, hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
"""


def test_concurrent_atomic_writers_never_expose_a_partial_file(tmp_path):
    """Two processes filling the same cache entry at once (the feature-network cache's first use)."""
    import hashlib

    path = tmp_path / "cache" / "features.bin"
    writers = [subprocess.Popen([sys.executable, "-c", ATOMIC_WRITER, str(path), tag], env=env())
               for tag in ("a", "b")]
    reads = 0
    while any(w.poll() is None for w in writers):
        if path.exists():
            digest, _, body = path.read_bytes().partition(b"\n")
            assert hashlib.sha256(body).hexdigest().encode() == digest, "a reader saw a partial file"
            reads += 1
    assert all(w.wait() == 0 for w in writers)
    assert reads > 0
    assert [p.name for p in path.parent.iterdir()] == ["features.bin"]  # no temp files left
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
