"""Errors a user can fix.

`UserError` is raised for problems in what the user gave ganrun: a config value, missing data, a
bad checkpoint. The CLI prints its message as one line and exits with code 2. Every other
exception is a bug and keeps its traceback.
"""


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
