"""Overrides and commands that survive being composed by ganrun and pasted back into a shell.

Two layers of quoting meet in every command ganrun prints: Hydra's override grammar (where `=`,
`,`, spaces, brackets and quotes in a value mean something: a sweep job dir `0_lr=1e-4,seed=0`
does not parse unquoted) and the shell's. `override(key, value)` writes one override Hydra
parses back to exactly `value`; `command([...])` joins arguments so a POSIX shell hands them to
ganrun unchanged, quoting only where needed so the common case stays readable.
"""

from __future__ import annotations

import re
import shlex
from typing import Iterable

HYDRA_PLAIN = re.compile(r"[\w./:+@%-]+")  # values Hydra takes as they are (paths without odd characters)
SHELL_PLAIN = re.compile(r"[\w./:=,+@%-]+")  # arguments a shell passes as they are
SHELL_SPECIAL_IN_DOUBLE_QUOTES = re.compile(r'["$`\\!]')


def hydra_quote(value: str) -> str:
    """`value` as a Hydra override value that parses back to exactly `value`."""
    if HYDRA_PLAIN.fullmatch(value) and value not in ("null", "true", "false") and not _number(value):
        return value
    # inside Hydra's single quotes, `\'` is a quote and backslashes right before a quote (or the
    # closing quote) must be doubled; every other backslash is literal
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
    return f"'{escaped}'"


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def override(key: str, value: object) -> str:
    """`key=value` with the value quoted for Hydra where it needs it (`trainer.resume='/a/0_x=1,y=2'`)."""
    return f"{key}={hydra_quote(str(value))}"


def shell_arg(arg: str) -> str:
    """One argument for a POSIX shell: bare when safe, double quotes when enough, else single quotes."""
    if SHELL_PLAIN.fullmatch(arg):
        return arg
    if not SHELL_SPECIAL_IN_DOUBLE_QUOTES.search(arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def command(args: Iterable[str]) -> str:
    """A command line that a shell splits back into exactly `args`."""
    return " ".join(shell_arg(str(a)) for a in args)
