"""Errors a user can fix.

`UserError` is raised for problems in what the user gave ganrun: a config value, missing data, a
bad checkpoint. The CLI prints its message as one line and exits with code 2. Every other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; its message says what is wrong and how to fix it."""
