"""`ganrun <command> [hydra overrides]`: pick the command's Hydra app and run it.

The only module that touches Hydra's entry points. Each command has its own primary config
(`configs/<command>.yaml`) sharing the config groups; adding a command is one entry in
`ganrun.commands.COMMANDS` and one YAML.

A user error (unknown group option, a bad key or value, missing data, a bad checkpoint, a full
disk or an unwritable run dir) prints one line to stderr and exits with code 2. A run stopped by
SIGINT/SIGTERM prints where it stands and exits with 128 + the signal number (130, 143). Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Callable, NoReturn

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp",
                     "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
USAGE = "usage: ganrun <command> [group=option ...] [key=value ...]   (commands: {names})"


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


def main(argv: list[str] | None = None) -> None:
    from ganrun.commands import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    names = ", ".join(COMMANDS.names())
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
        overrides = [f"{command.positional}={_quoted(overrides[0])}", *overrides[1:]]
    try:
        _check_group_choices(name, overrides)
        _prevalidate(name, overrides)
        overrides = [*overrides, *_check_run_dir(name, overrides)]
        _run_hydra(name, _guarded(command.run), overrides)
    except KeyboardInterrupt as exc:
        stopped(exc)
    except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs below
        message = user_error_message(exc)
        if message is None:
            raise
        fail(message)


def _quoted(value: str) -> str:
    """A path as a Hydra override value: quoted when it holds characters the override grammar reads."""
    if all(ch.isalnum() or ch in "_-./~" for ch in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _guarded(task: Callable) -> Callable:
    """Turn a user error inside a job into one line + exit 2 before Hydra's job runner reports it."""

    def job(cfg):
        try:
            return task(cfg)
        except KeyboardInterrupt as exc:
            stopped(exc)
        except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs below
            message = user_error_message(exc)
            if message is None:
                raise
            fail(message)

    job.__name__ = getattr(task, "__name__", "job")
    job.__module__ = getattr(task, "__module__", __name__)
    return job


def _setup() -> None:
    from omegaconf import OmegaConf

    from ganrun.config.store import register_configs

    register_configs()
    if not OmegaConf.has_resolver("ganrun_run_id"):
        # One short random suffix per process: two runs started in the same second never share
        # a directory. Cached, so every reference in one run resolves to the same value.
        run_id = secrets.token_hex(2)
        OmegaConf.register_new_resolver("ganrun_run_id", lambda: run_id, use_cache=True)


def compose(config_name: str, overrides: list[str]):
    """Compose `configs/<config_name>.yaml` with overrides, inside or outside a running Hydra app."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    _setup()
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(config_name=config_name, overrides=overrides)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def _run_hydra(config_name: str, task: Callable, overrides: list[str]) -> None:
    import hydra

    _setup()
    # Let errors reach us instead of Hydra's reporter, so user errors become one line + exit 2.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    app = hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(task)
    saved_argv = sys.argv
    sys.argv = [f"ganrun {config_name}", *overrides]
    try:
        app()
    finally:
        sys.argv = saved_argv


def _check_group_choices(config_name: str, overrides: list[str]) -> None:
    """Reject `model=foo` before Hydra does, listing the valid choices on one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ganrun.errors import UserError

    groups = {p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra"}
    # Hydra's flags and their values (`--cfg job`, `-p model`) are not overrides
    plain = [o for i, o in enumerate(overrides)
             if "=" in o and not o.startswith("-") and (i == 0 or overrides[i - 1] not in HYDRA_VALUE_FLAGS)]
    try:
        parsed = OverridesParser.create().parse_overrides(plain)
    except Exception as exc:  # hydra's OverrideParseException
        raise UserError(f"cannot parse override: {str(exc).strip().splitlines()[0]}") from None
    for override in parsed:
        group = override.key_or_group
        if group not in groups or override.package or override.is_delete():
            continue
        choices = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
            override.value()
        ]
        for value in values:
            if str(value) not in choices:
                raise UserError(f"unknown {group} '{value}' (choose from: {', '.join(choices)})")


HYDRA_FLAGS_WITHOUT_A_RUN = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion",
                              "-sc", "--multirun", "-m"}


def _prevalidate(config_name: str, overrides: list[str]) -> None:
    """Compose and validate before Hydra creates a run dir, so bad input leaves nothing behind.

    Skipped for Hydra's own flags (help, --cfg, multirun: each job validates itself).
    """
    if any(arg in HYDRA_FLAGS_WITHOUT_A_RUN for arg in overrides) or any(a.startswith("-") for a in overrides):
        return
    from omegaconf import OmegaConf

    from ganrun.config.validate import validate

    validate(OmegaConf.to_object(compose(config_name, overrides)))


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ganrun.errors import UserError

    plain = [o for o in overrides if "=" in o and not o.startswith("-")]  # not flags or their values
    try:
        return OverridesParser.create().parse_overrides(plain)
    except Exception as exc:  # hydra's OverrideParseException
        raise UserError(f"cannot parse override: {str(exc).splitlines()[0]}") from None


def _holds_run(run_dir: Path) -> bool:
    """A folder holds an earlier run worth protecting when it has checkpoints in it."""
    return any((run_dir / "checkpoints").glob("*.pt"))


def _check_run_dir(config_name: str, overrides: list[str]) -> list[str]:
    """Refuse, before Hydra writes `.hydra/` into it, a run dir holding an earlier run's checkpoints.

    `hydra.run.dir=<dir of an earlier run>` is allowed only to continue that run in place
    (`trainer.resume=<the same dir>` or `trainer.resume=auto`); its original `.hydra/` is then kept and this invocation's
    config goes to `.hydra/resume-<time>/` (returned as an extra override). `hydra.sweep.dir` of an
    earlier sweep reruns it: finished jobs are skipped, the others resume from their last.pt.
    Also checks that the run dir can be created.
    """
    from ganrun.errors import UserError

    if any(o.split("=")[0] in HYDRA_FLAGS_WITHOUT_A_RUN - {"-m", "--multirun"} for o in overrides):
        return []  # --cfg, --help, ...: Hydra prints and exits without writing
    multirun = any(o in ("-m", "--multirun") for o in overrides)
    values = {o.key_or_group: o.value() for o in _parse(overrides) if not o.is_sweep_override()}
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = values.get(key)
    if not isinstance(given, str) or "${" in given:
        return []
    run_dir = Path(given).expanduser().absolute()
    ancestor = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if not ancestor.is_dir():
        raise UserError(f"{key}={given} cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{key}={given} is not writable (no write permission on {ancestor}); choose another {key}")
    if multirun:  # an earlier sweep's dir: rerun it, skipping finished jobs, resuming the others (sweeps.job)
        return []
    if config_name != "train" or not _holds_run(run_dir):
        return []
    resume = values.get("trainer.resume")
    if isinstance(resume, str):
        from ganrun.train.checkpoint import AUTO_RESUME, CHECKPOINT_DIR, LAST, resolve_checkpoint

        in_place = resume == AUTO_RESUME or resolve_checkpoint(resume).resolve() == (run_dir / CHECKPOINT_DIR / LAST).resolve()
        if in_place:
            if "hydra.output_subdir" in values:
                return []
            return [f"hydra.output_subdir=.hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}"]
    raise UserError(f"hydra.run.dir={given} already holds a run (checkpoints/); choose another hydra.run.dir, "
                    f"or continue that run in place with trainer.resume={given}")


# Filesystem errors that mean "the disk or the folder", not "a bug": a full disk, a quota, a file
# too large, a read-only filesystem, no permission, a file where a folder should be.
FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def user_error_message(exc: BaseException) -> str | None:
    """One line for an error the user can fix; None for a bug."""
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from ganrun.errors import UserError

    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in FS_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where} (free disk space, or choose a writable hydra.run.dir)"
    cause = exc.__cause__ if isinstance(exc, HydraException) and exc.__cause__ else exc
    if isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        text = str(getattr(cause, "msg", None) or cause).splitlines()[0].strip()
        if "MISSING" in text or "Missing mandatory value" in text:
            return f"missing value for '{key}': pass {key}=<value> on the command line"
        return f"invalid config for '{key}': {text}" if key else f"invalid config: {text}"
    if isinstance(exc, (HydraException, MissingConfigException)):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return "; ".join(lines[:2]) or type(exc).__name__
    return None
