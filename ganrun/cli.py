"""`ganrun <command> [hydra overrides]`: pick the command's Hydra app and run it.

Dispatch only, and the only module that touches Hydra's entry point. Each command has its own
primary config (`configs/<command>.yaml`) sharing the config groups; adding a command is one
entry in `ganrun.commands.COMMANDS` and one YAML.

Before Hydra starts: group choices are checked, the config is composed and validated
(`ganrun.config.overrides.prevalidate`) and the command's `prepare` hook runs (the run-dir guard),
so bad input leaves nothing behind. A user error (unknown group option, a bad key or value,
missing data, a bad checkpoint, a full disk or an unwritable run dir; sorted by
`ganrun.errors.user_error_message`) prints one line to stderr and exits with code 2. A run
stopped by SIGINT/SIGTERM prints where it stands and exits with 128 + the signal number (130,
143). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator, NoReturn

PHASES = {"train": "start-up (before the first step; no new checkpoint was written)",
          "eval": "the evaluation (no result was written)", "sample": "sampling (no image was written)",
          "features": "the feature-network fit (nothing was cached)"}  # for "stopped by SIGTERM during ..."
USAGE = ("usage: ganrun <command> [group=option ...] [key=value ...]   (commands: {names})\n"
         "       ganrun <command> --help | ganrun --version | ganrun --shell-completion install=bash|zsh")


def fail(message: str) -> NoReturn:
    """Print a user error as one line and exit with code 2."""
    print(f"ganrun: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def stopped(exc: KeyboardInterrupt) -> NoReturn:
    """A run stopped by a signal: one line, exit 128 + signal (a bare Ctrl-C outside the loop: 130)."""
    from ganrun.errors import Interrupted

    message = str(exc) if isinstance(exc, Interrupted) else "interrupted"
    print(f"ganrun: {message}", file=sys.stderr, flush=True)
    sys.exit(exc.exit_code if isinstance(exc, Interrupted) else 130)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """User errors and signals inside the body → one line and their exit code; bugs propagate."""
    from ganrun.errors import user_error_message

    try:
        yield
    except KeyboardInterrupt as exc:
        stopped(exc)
    except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs
        message = user_error_message(exc)
        if message is None:
            raise
        fail(message)


def version_line() -> str:
    """`ganrun --version`: ganrun's version and those of the libraries a run depends on (no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    import ganrun

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return f"ganrun {ganrun.__version__} (torch {of('torch')}, hydra-core {of('hydra-core')}, python {sys.version.split()[0]})"


def main(argv: list[str] | None = None) -> None:
    from ganrun import completion
    from ganrun.commands import COMMANDS, resolve

    argv = list(sys.argv[1:] if argv is None else argv)
    names = ", ".join(COMMANDS.names())
    if argv and argv[0] in ("--version", "-V"):
        print(version_line())
        sys.exit(0)
    if (request := completion.requested(argv)) is not None:
        completion.handle(request, COMMANDS, _complete, fail)
        sys.exit(0)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(names=names))
        sys.exit(0 if argv else 2)
    name, overrides = argv[0], argv[1:]
    if name not in COMMANDS:
        fail(f"unknown command '{name}' (choose from: {names})")
    command = COMMANDS.get(name)
    if command.actions:
        if not overrides or overrides[0] not in command.actions:
            fail(f"usage: ganrun {name} <{'|'.join(command.actions)}> [overrides]")
        overrides = [f"action={overrides[0]}", *overrides[1:]]
    if command.positional and overrides and not overrides[0].startswith("-") and (
            "=" not in overrides[0] or os.path.exists(overrides[0])):  # sweep job dirs have = in their names
        from ganrun.shell import override

        overrides = [override(command.positional, overrides[0]), *overrides[1:]]
    from ganrun.train.signals import StopOnSignal

    # a signal before training's own handler takes over, or in eval/sample: stop at once, one line
    with one_line_errors(), StopOnSignal(defer=False, phase=PHASES.get(name, f"ganrun {name}")):
        import ganrun.losses  # noqa: F401  (the regularizers store the loss schema)
        import ganrun.models  # noqa: F401  (the model families store their schemas, which composing needs)
        from ganrun.config.overrides import check_group_choices, prevalidate

        from ganrun.config.compose import CONFIG_DIR
        from ganrun.config.sweep_dirs import constant_key_exclusions

        check_group_choices(overrides)
        if "--help" in overrides or "-h" in overrides:
            _help(name, command, overrides)
            return
        prevalidate(name, overrides)
        overrides = [*overrides, *resolve(command.prepare)(overrides)]
        overrides += constant_key_exclusions(overrides, CONFIG_DIR / "hydra" / "ganrun.yaml")
        _run_hydra(name, _job(command.run), overrides)


def _complete(name: str, args: list[str]) -> None:
    """Hydra's completion of command `name` (its app composes, so the model families' schemas are needed)."""
    import ganrun.losses  # noqa: F401  (the regularizers store the loss schema)
    import ganrun.models  # noqa: F401

    _run_hydra(name, lambda cfg: None, args)


def _help(name: str, command, overrides: list[str]) -> None:
    """Hydra's help page, each config key with the comment of its YAML (ganrun.help)."""
    import io

    from ganrun import help as helppage
    from ganrun.config.compose import CONFIG_DIR

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            _run_hydra(name, _job(command.run), overrides)
    except SystemExit as exc:  # Hydra exits after printing help
        if exc.code not in (None, 0):
            print(buf.getvalue(), end="")
            raise
    print(helppage.page(CONFIG_DIR, name, overrides, buf.getvalue()), end="", flush=True)


def _job(path: str) -> Callable:
    """The Hydra task function for a command's `run` ("module:function", imported when the job
    starts); a user error inside the job becomes one line + exit 2 before Hydra's runner reports it."""

    def job(cfg):
        from ganrun.commands import resolve

        with one_line_errors():
            return resolve(path)(cfg)

    job.__module__ = path.partition(":")[0]
    return job


def _run_hydra(config_name: str, task: Callable, overrides: list[str]) -> None:
    import hydra

    from ganrun.config.compose import CONFIG_DIR, setup

    setup()
    # Let errors reach us instead of Hydra's reporter, so user errors become one line + exit 2.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    app = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(task)
    saved_argv = sys.argv
    sys.argv = [f"ganrun {config_name}", *overrides]
    try:
        app()
    finally:
        sys.argv = saved_argv
