"""Stop a run cleanly on SIGINT (Ctrl-C) or SIGTERM (what cluster schedulers send).

The first signal only sets a flag: the loop's `should_stop` callback sees it after the current
step, the loop writes a checkpoint and returns, and the command raises `Interrupted` with the
resume command. A second signal quits at once (mid-step, without a checkpoint; the checkpoint
write in progress, if any, is abandoned and its temp file removed, so the previous one stays).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Optional

from ganrun.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """Context manager and `should_stop` callable: True once SIGINT or SIGTERM has arrived.

    Handlers are installed only in the main thread (Python allows no other) and the previous
    ones are restored on exit, so `train(cfg)` called from a notebook or a test leaves no trace.
    """

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise Interrupted(f"{name} received again: quit at once without a new checkpoint", signum)
        self.signum = signum
        # os.write, not print: a handler may run inside a print, and buffered streams are not reentrant
        os.write(2, f"ganrun: {name} received: finishing this step and writing a checkpoint "
                    f"(send it again to quit at once)\n".encode())

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
