"""Errors a user can fix, and the one place that sorts them from bugs.

`UserError` is raised for problems in what the user gave ganrun: a config value, missing data, a
bad checkpoint. `user_error_message` also counts Hydra/OmegaConf config errors and filesystem
errors (a full disk, no permission) as the user's. The CLI prints the message as one line and
exits with code 2. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """A problem the user can fix; its message says what is wrong and how to fix it."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM).

    A KeyboardInterrupt, so `except Exception` in library code never swallows it. Its message says
    where the run stands and how to resume it; the CLI prints it as one line and exits with
    128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell does.
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# Filesystem errors that mean "the disk or the folder", not "a bug": a full disk, a quota, a file
# too large, a read-only filesystem, no permission, a file where a folder should be.
FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def user_error_message(exc: BaseException) -> str | None:
    """One line for an error the user can fix; None for a bug."""
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in FS_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where} (free disk space, or choose a writable hydra.run.dir)"
    cause = exc.__cause__ if isinstance(exc, HydraException) and exc.__cause__ else exc
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        text = str(getattr(cause, "msg", None) or cause).splitlines()[0].strip()
        if "MISSING" in text or "missing mandatory value" in text.lower():
            return f"missing value for '{key}': pass {key}=<value> on the command line"
        return f"invalid config for '{key}': {text}" if key else f"invalid config: {text}"
    if isinstance(exc, (HydraException, MissingConfigException)):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return "; ".join(lines[:2]) or type(exc).__name__
    return None
