"""Honour SIGINT (Ctrl-C), SIGTERM and SIGUSR2 (what cluster schedulers send) within seconds, in every phase.

Two kinds of handler, nested:
- `StopOnSignal(defer=False)`, installed by the CLI around the whole command: a signal raises
  `Interrupted` at once (start-up, data loading, building, `ganrun eval`/`sample`), so the command
  ends with one line and exit 128 + the signal number. Files are written atomically, so nothing is
  left half-written.
- `StopOnSignal()` (defer=True), installed by `train` around the loop: the first signal only sets a
  flag; the loop's `should_stop` sees it after the current step, writes a checkpoint and returns,
  and the command raises `Interrupted` with the resume command. Host work that can take long
  (sample grids, evaluation and the feature-network fit of the first one) runs inside
  `stop.now(phase)`: there the first signal ends that work at once (the loop then writes the
  checkpoint of the finished step).
A second signal always quits at once, even inside a checkpoint write: `ganrun.atomic` then removes
the temp file and re-raises the `Interrupted` (not the writer's error), so the previous file stays.

SIGUSR2 is Slurm's warning before a time limit or a preemption (submitit asks for it). Under
submitit, `pass_on` hands the signal, once the checkpoint is written, to the handler that was
there before (submitit's: it requeues the job, which then resumes with trainer.resume=auto).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator, Optional

from ganrun.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
PHASE_ENV = "GANRUN_TEST_PHASE"  # test hook, "TEXT:SECONDS[:NTH]": at the NTH start (default: each) of a
# phase whose name has TEXT, say so on stderr and wait SECONDS there
_hook_hits = 0
_active: list["StopOnSignal"] = []  # the installed handlers, innermost last (signal handlers are per process)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Name what the process is doing, for the message of a stop during it (innermost handler)."""
    stop = _active[-1] if _active else None
    saved = stop.phase if stop else None
    if stop:
        stop.phase = name
    _test_hook(name)
    try:
        yield
    finally:
        if stop:
            stop.phase = saved


def _test_hook(name: str) -> None:
    global _hook_hits
    hook = os.environ.get(PHASE_ENV)
    if hook:
        text, seconds, nth = (hook.split(":") + ["0"])[:3]
        if text in name:
            _hook_hits += 1
            if int(nth) in (0, _hook_hits):
                os.write(2, f"ganrun-test: phase {name}\n".encode())
                time.sleep(float(seconds or 0))


class StopOnSignal:
    """Context manager and `should_stop` callable: True once SIGINT or SIGTERM has arrived.

    Handlers are installed only in the main thread (Python allows no other) and the previous
    ones are restored on exit, so `train(cfg)` called from a notebook or a test leaves no trace.
    """

    def __init__(self, *, defer: bool = True, phase: str = "training", interrupt_host_work: bool = True) -> None:
        self.signum: Optional[int] = None
        self.defer = defer
        # False (several ranks): `now` sections finish, so every rank stops after the same step
        self.interrupt_host_work = interrupt_host_work
        self.phase = phase  # what is running, for the message of an immediate stop
        self._now = 0  # depth of `now()` sections: a first signal stops their work at once
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __call__(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def now(self, phase: str) -> Iterator[None]:
        """Inside: a first signal raises `Interrupted` at once (long host work that leaves no state)."""
        saved, self.phase = self.phase, phase
        self._now += self.interrupt_host_work
        try:
            if self.signum is not None and self.interrupt_host_work:  # the signal came just before: do not start the work
                raise Interrupted(f"stopped by {self.name} before {phase}", self.signum)
            _test_hook(phase)
            yield
        finally:
            self._now -= self.interrupt_host_work
            self.phase = saved

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise Interrupted(f"{name} received again: quit at once without a new checkpoint", signum)
        self.signum = signum
        if not self.defer:
            raise Interrupted(f"stopped by {name} during {self.phase}", signum)
        # os.write, not print: a handler may run inside a print, and buffered streams are not reentrant
        if self._now:
            os.write(2, f"ganrun: {name} received during {self.phase}: stopping it and writing a checkpoint "
                        f"(send it again to quit at once)\n".encode())
            raise Interrupted(f"stopped by {name} during {self.phase}", signum)
        os.write(2, f"ganrun: {name} received: finishing this step and writing a checkpoint "
                    f"(send it again to quit at once)\n".encode())

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        _active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._handed = dict(self._previous)
        self._previous.clear()
        if self in _active:
            _active.remove(self)

    def pass_on(self) -> None:
        """After the checkpoint: call the Python handler the received signal had before ours, if any
        (submitit's requeue on SIGUSR2; it may exit the process). Default handlers are left alone."""
        pass_on(self.signum, getattr(self, "_handed", {}).get(self.signum))


def pass_on(signum: Optional[int], previous: object) -> None:
    """Call `previous(signum, None)` when it is a Python handler other than Ctrl-C's default."""
    if signum is None or not callable(previous) or previous is signal.default_int_handler:
        return
    if isinstance(getattr(previous, "__self__", None), StopOnSignal):
        return  # ganrun's own outer handler (the CLI's): the Interrupted raised after this says it all
    previous(signum, None)
