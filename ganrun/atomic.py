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
from pathlib import Path
from typing import BinaryIO, Callable


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if not (exclusive and _link(tmp, path)):
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
