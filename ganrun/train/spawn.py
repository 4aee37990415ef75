"""`trainer.devices=N`: the Hydra job spawns its N ranks, watches them, and speaks for them.

The job (one run of a plain call or of a `-m` sweep) has already fixed the run dir and composed
the config; each rank recomposes the same config from the job's overrides and calls the train
function as `Dist` rank r of N (`trainer.resume=auto` is resolved by every rank before they meet,
so before any of them can write a checkpoint: they all resume from the same file, or none does).
Rank 0 prints the run's console output; the job prints its outcome once.

Signals: the ranks sit in their own process group, so a Ctrl-C at the terminal reaches the job
only, which forwards SIGINT/SIGTERM/SIGUSR2 to every rank once; the ranks all-reduce the stop flag,
stop after the same step, and rank 0 writes one checkpoint. A rank whose job process dies gets
SIGTERM (PR_SET_PDEATHSIG) and stops the same way.

Failures: when a rank dies (kill -9, a crash, a user error), the others fail their next
collective (the peer's sockets close) or are killed after `GRACE_S`; the job then says in one
line which rank ended how and where the last checkpoint is (it is written atomically by rank 0,
so a rank dying mid-write leaves the previous one intact).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ganrun.errors import Interrupted, UserError
from ganrun.train.signals import SIGNALS, pass_on

GRACE_S = 10.0  # after one rank fails, how long the others get to exit before they are killed
POLL_S = 0.05


class RankFailed(UserError):
    """A rank was killed or crashed; the run stopped."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent(parent: int) -> None:
    """SIGTERM this process when the job process dies (Linux), so no rank outlives its job."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the job died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _rank_env(rank: int, world: int, port: int) -> dict[str, str]:
    """torchrun's variables for one rank on this host."""
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world), "GANRUN_RANKS_FROM": "spawn"}


@contextmanager
def _environ(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rank_main(train: Callable, rank: int, world: int, port: int, overrides: list[str], run_dir: str,
               outbox: Any, parent: int, threads: int, args: tuple) -> None:
    """One rank: recompose the job's config, train, and report the outcome to the job.

    `train(cfg, run_dir, overrides, rank, notes, *args)`; what rank 0 leaves in `notes` (name →
    a function of no arguments) goes back to the job, read at the end whatever the outcome."""
    os.setpgrp()  # terminal signals reach the ranks through the job only: each arrives once
    _die_with_parent(parent)
    os.environ.update(_rank_env(rank, world, port))
    code = 1
    notes: dict[str, Callable[[], Any]] = {}
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        from ganrun.config.compose import compose
        from ganrun.errors import user_error_message
        from ganrun.train.distributed import is_collective_failure
        from ganrun.train.signals import StopOnSignal

        try:
            with StopOnSignal(defer=False, phase="start-up"):  # train installs its own deferring handler
                result = train(compose("train", overrides), Path(run_dir), overrides, rank, notes, *args)
            outbox.put(("done", rank, result))
            code = 0
        except Interrupted as exc:
            outbox.put(("stopped", rank, str(exc), exc.signum))
            code = exc.exit_code
        except Exception as exc:  # noqa: BLE001 - sorted below, bugs keep their traceback
            message = user_error_message(exc)
            if message is not None:
                outbox.put(("error", rank, message))
                code = 2
            elif is_collective_failure(exc):
                outbox.put(("lost", rank, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
            else:
                traceback.print_exc()
                outbox.put(("bug", rank, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"))
    finally:
        try:
            if rank == 0 and notes:
                outbox.put(("notes", -1, {k: f() for k, f in notes.items()}))
        except Exception:  # noqa: BLE001 - the notes are a courtesy; the outcome was sent
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        outbox.close()
        outbox.join_thread()  # the outcome reaches the job before this process ends
        os._exit(code)  # skip atexit work of a half-torn-down process group


class _Forwarder:
    """The job's handlers while ranks run: pass each signal on to every live rank."""

    def __init__(self, procs: list) -> None:
        self.procs = procs
        self.signum: Optional[int] = None
        self.previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum
        for p in self.procs:
            if p.pid is not None and p.exitcode is None:
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "_Forwarder":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _describe(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def _checkpoint_note(run_dir: Path) -> str:
    from ganrun.train.checkpoint import CHECKPOINT_DIR, LAST

    last = run_dir / CHECKPOINT_DIR / LAST
    if last.is_file():
        from ganrun.shell import command, override

        return f"the last checkpoint {last} is intact; resume with: {command(['ganrun', 'train', override('trainer.resume', run_dir)])}"
    return "no checkpoint had been written yet"


def run_ranks(train: Callable, overrides: Sequence[str], run_dir: Path, world: int, *, cpu: bool,
              notes: Optional[dict] = None, args: tuple = ()) -> dict[str, float]:
    """`train(cfg, run_dir, overrides, rank, notes, *args)` on `world` spawned ranks (a module-level
    function, pickled by name); return rank 0's result or raise the run's outcome. Rank 0's notes
    (see `_rank_main`) are copied into `notes` whatever the outcome."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA or gloo state
    outbox = ctx.Queue()
    port = free_port()
    threads = max(1, (os.cpu_count() or 1) // world) if cpu else 0
    procs = [ctx.Process(target=_rank_main, name=f"ganrun-rank{r}",
                         args=(train, r, world, port, list(overrides), str(run_dir), outbox, os.getpid(), threads,
                               tuple(args)))
             for r in range(world)]
    messages: dict[int, tuple] = {}
    ended: list[int] = []  # ranks in the order they exited
    with _Forwarder(procs) as forward:
        for r, p in enumerate(procs):
            with _environ(_rank_env(r, world, port)):  # inherited: `ps e` shows each rank's RANK
                p.start()
        failed_at: Optional[float] = None
        while len(ended) < world:
            try:
                while True:
                    item = outbox.get(timeout=POLL_S)
                    messages[item[1]] = item
            except queue.Empty:
                pass
            for r, p in enumerate(procs):
                if r not in ended and p.exitcode is not None:
                    ended.append(r)
                    stop_code = p.exitcode in {128 + s for s in SIGNALS} or p.exitcode == 0
                    if not stop_code and failed_at is None:
                        failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > GRACE_S:
                for p in procs:
                    if p.exitcode is None:
                        p.kill()
                for p in procs:
                    p.join()
        try:  # messages put just before exit
            while True:
                item = outbox.get(timeout=POLL_S)
                messages[item[1]] = item
        except queue.Empty:
            pass
    outbox.close()
    if notes is not None and -1 in messages:
        notes.update(messages.pop(-1)[2])
    return _outcome(procs, messages, ended, run_dir, forward)


def _outcome(procs: list, messages: dict[int, tuple], ended: list[int], run_dir: Path,
             forward: _Forwarder) -> dict[str, float]:
    world = len(procs)
    codes = [p.exitcode for p in procs]
    kinds = [messages.get(r, ("none",))[0] for r in range(world)]
    if all(c == 0 for c in codes) and kinds[0] == "done":
        return messages[0][2]
    # the first rank that failed by itself; the ranks that only lost contact with it come after
    for r in ended:
        if kinds[r] == "error":
            raise UserError(messages[r][2])
        if kinds[r] == "bug" or (kinds[r] == "none" and codes[r] != 0):
            what = f"crashed ({messages[r][2]}; traceback above)" if kinds[r] == "bug" else _describe(codes[r])
            raise RankFailed(f"rank {r} of {world} (pid {procs[r].pid}) {what}; the run stopped and the other "
                             f"ranks were ended; {_checkpoint_note(run_dir)}")
    if "stopped" in kinds and all(k in ("stopped", "done") for k in kinds):
        _, _, text, signum = messages[0] if kinds[0] == "stopped" else messages[kinds.index("stopped")]
        pass_on(signum, forward.previous.get(signum))  # e.g. submitit's requeue on SIGUSR2
        raise Interrupted(text, signum)
    lost = [r for r in range(world) if kinds[r] == "lost"]
    detail = f"rank {lost[0]}: {messages[lost[0]][2]}" if lost else ", ".join(
        f"rank {r} {_describe(c)}" for r, c in enumerate(codes))
    raise RankFailed(f"the ranks lost contact with each other ({detail}); the run stopped; "
                     f"{_checkpoint_note(run_dir)}")
