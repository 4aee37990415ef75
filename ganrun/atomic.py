"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

The bytes go to a temp file in the target's own folder (same filesystem, so the rename is
atomic), are flushed and fsynced, and the temp file is renamed over the target; the folder is
then fsynced so the rename survives a power cut. If anything fails (a full disk, a signal, a
crash of the writer) the temp file is removed and the previous target is untouched. Two
processes writing the same path at once both succeed, and the last rename wins whole.

Used for checkpoints and for anything cached across runs (fitted feature networks, reference
statistics), where two concurrent first uses must not corrupt the cache. Imports only the
standard library, so any package of ganrun may use it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"  # temp files: .<name>.<random>.tmp beside the target
STALL_ENV = "GANRUN_TEST_STALL_WRITE"  # test hook, "BYTES:SECONDS:NTH[:SUFFIX]": stall the NTH write (0: each)
# of a file whose name ends with SUFFIX (default .pt: checkpoints) after BYTES
_writes = 0  # such writes started by this process (for the test hook's NTH)


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask sets it to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, exclusive: bool = False) -> Path:
    """Call `write(f)` on a temp file next to `path`, then move it into place atomically.

    exclusive=True publishes with a hard link, which fails if `path` already exists: the first of
    several concurrent writers wins and the others get FileExistsError (their temp file removed),
    so every process ends up using the same file. Where the filesystem has no hard links it falls
    back to the rename. Raises what `write`, the filesystem or the rename raise (OSError for a
    full disk or an unwritable folder), always after removing the temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            write(_stalling(f, path) if os.environ.get(STALL_ENV) else f)
            f.flush()
            os.fsync(f.fileno())
        if not (exclusive and _link(tmp, path)):
            os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        interrupt = _interrupt_in(exc)
        if interrupt is not None and interrupt is not exc:
            # a signal's exception raised inside the writer, which then failed closing its half-written
            # archive: report the signal (one line), not the writer's error (a traceback)
            raise interrupt from None
        raise
    Path(tmp).unlink(missing_ok=True)  # the link's other name, after an exclusive publish
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _interrupt_in(exc: Optional[BaseException]) -> Optional[BaseException]:
    """The KeyboardInterrupt (a signal's Interrupted) in `exc` or its chain of causes, if any."""
    for _ in range(20):
        if exc is None or isinstance(exc, KeyboardInterrupt):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def stale_temp_files(folder: str | Path) -> Iterator[Path]:
    """Temp files that atomic writes into `folder` left behind when their process was killed."""
    folder = Path(folder)
    if folder.is_dir():
        yield from (p for p in folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}") if p.is_file())


class _Stall:
    """The test hook: a file whose writes pause once BYTES have been written (see STALL_ENV)."""

    def __init__(self, f: BinaryIO, path: Path, at: int, seconds: float) -> None:
        self._f, self._path, self._at, self._seconds, self._n = f, path, at, seconds, 0

    def write(self, data) -> int:
        before, self._n = self._n, self._n + len(data)
        if before <= self._at < self._n or (self._at == 0 and before == 0):
            head = self._at - before
            written = self._f.write(bytes(memoryview(data)[:head])) if head > 0 else 0
            os.write(2, f"ganrun-test: stalling the write of {self._path} at {self._at} bytes\n".encode())
            time.sleep(self._seconds)
            return written + self._f.write(bytes(memoryview(data)[head:]))
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def _stalling(f: BinaryIO, path: Path):
    global _writes
    at, seconds, nth, *suffix = os.environ[STALL_ENV].split(":")
    if not path.name.endswith(suffix[0] if suffix else ".pt"):
        return f
    _writes += 1
    return _Stall(f, path, int(at), float(seconds)) if int(nth) in (0, _writes) else f

def _link(tmp: str, path: Path) -> bool:
    """Hard-link tmp to path (FileExistsError if path exists); False where links are not supported."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        raise
    except OSError:
        return False


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))
