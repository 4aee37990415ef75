"""Tab completion for `ganrun <command> ...` in bash and zsh, answered by Hydra's own completion.

    eval "$(ganrun --shell-completion install=bash)"   # or install=zsh; put it in ~/.bashrc / ~/.zshrc

The shell function asks `ganrun --shell-completion query=bash` with the line typed so far
(COMP_LINE, COMP_POINT). ganrun answers the first word itself (the command names, and a
command's actions such as `features fit`); after that it hands the rest of the line to Hydra's
completion of that command's app (config groups, their options, config keys, file paths), as if
the app were a program of its own. zsh runs the bash function through bashcompinit.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Callable, Optional

FLAGS = ("--shell-completion", "-sc")
SHELLS = ("bash", "zsh")

BASH = r"""_ganrun_completion()
{
    local word="${COMP_WORDS[COMP_CWORD]}"
    local choices
    choices=$(COMP_POINT="$COMP_POINT" COMP_LINE="$COMP_LINE" "${COMP_WORDS[0]}" --shell-completion query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$word"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _ganrun_completion ganrun
"""
ZSH = "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n" + BASH
UNINSTALL = "complete -r ganrun 2>/dev/null\nunset -f _ganrun_completion\n"


def requested(argv: list[str]) -> Optional[str]:
    """`install=bash`, `query=bash`, ... when argv asks for shell completion (anywhere), else None."""
    for i, arg in enumerate(argv):
        if arg in FLAGS:
            return argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith("--shell-completion="):
            return arg.split("=", 1)[1]
    return None


def handle(request: str, commands, run_hydra: Callable[[str, list[str]], None], fail: Callable[[str], None]) -> None:
    """Answer `--shell-completion <request>`: print an install/uninstall script or the matches."""
    action, _, shell = request.partition("=")
    if action not in ("install", "uninstall", "query") or shell not in SHELLS:
        fail(f"--shell-completion takes install=bash|zsh, uninstall=bash|zsh or query=bash|zsh; got '{request}'")
    if action == "install":
        print(ZSH if shell == "zsh" else BASH, end="")
    elif action == "uninstall":
        print(UNINSTALL, end="")
    else:
        query(commands, run_hydra)


def query(commands, run_hydra: Callable[[str, list[str]], None]) -> None:
    line = os.environ.get("COMP_LINE", "")
    point = int(os.environ.get("COMP_POINT") or len(line))
    line = line[:point]
    try:
        words = shlex.split(line)
    except ValueError:  # an open quote: split on blanks
        words = line.split()
    if line and not line[-1].isspace():
        done, word = words[1:-1], words[-1] if len(words) > 1 else ""
    else:
        done, word = words[1:], ""
    if not done:  # the command word
        print(" ".join(n for n in [*commands.names(), "--help", "--version"] if n.startswith(word)))
        return
    name = done[0]
    if name not in commands:
        return
    command, rest = commands.get(name), done[1:]
    if command.actions:
        if not rest:
            print(" ".join(a for a in command.actions if a.startswith(word)))
            return
        rest = rest[1:]
    # Hydra's completion reads the line after the program's name: hand it this command's part
    os.environ["COMP_LINE"] = " ".join(["ganrun", *map(shlex.quote, rest), word]) if word else \
        " ".join(["ganrun", *map(shlex.quote, rest)]) + " "
    os.environ["COMP_POINT"] = str(len(os.environ["COMP_LINE"]))
    sys.stdout.flush()
    run_hydra(name, ["--shell-completion", "query=bash"])
