"""The run-dir guard: checks on `hydra.run.dir` / `hydra.sweep.dir` before Hydra writes into them.

A command's `prepare` hook (see `ganrun.commands.Command`): called with the overrides before
Hydra starts, it returns extra overrides. `check_run_dir` is every command's; `check_train_run_dir`
adds the train command's rule that a folder holding an earlier run is reused only to continue
that run in place.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ganrun.config.overrides import HYDRA_FLAGS_WITHOUT_A_RUN, parse
from ganrun.errors import UserError
from ganrun.shell import command, override

CREATED_ENV = "GANRUN_RUN_DIR_CREATED"  # set for the job (hydra.job.env_set): the topmost dir Hydra creates
RECORD_ENV = "GANRUN_RECORD_SUBDIR"  # where `ganrun train` writes the run's record (.hydra, or .hydra/resume-*)
# (run dir, the value as given, the plain overrides) → extra overrides, or UserError
Continues = Callable[[Path, str, dict[str, Any]], list[str]]


def holds_run(run_dir: Path) -> bool:
    """A folder holds an earlier run worth protecting when it has checkpoints in it."""
    return any((run_dir / "checkpoints").glob("*.pt"))


def check_run_dir(overrides: list[str], continues: Optional[Continues] = None) -> list[str]:
    """Check that the run dir can be created. An earlier sweep's `hydra.sweep.dir` reruns that sweep
    (finished jobs skipped, the others resumed from their last.pt: ganrun.sweeps.job).

    When `hydra.run.dir` already holds a run, `continues` (if given) decides: it returns extra
    overrides, or raises UserError. Returns the extra overrides for Hydra.
    """
    if any(o.split("=")[0] in HYDRA_FLAGS_WITHOUT_A_RUN - {"-m", "--multirun"} for o in overrides):
        return []  # --cfg, --help, ...: Hydra prints and exits without writing
    multirun = any(o in ("-m", "--multirun") for o in overrides)
    parsed = [o for o in parse(overrides) if not o.is_sweep_override()]
    values = {o.key_or_group: o.value() for o in parsed}
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = values.get(key)
    extra: list[str] = []
    if continues is not None and (not isinstance(given, str) or "${" in given):
        # judge the final path: resolve the interpolations (the default's date and time included) now,
        # and pin the result for Hydra, so the dir checked is the dir used
        given = _resolve(key, [o.input_line for o in parsed])
        extra.append(f"{key}={_quoted(given)}")
    if not isinstance(given, str):
        return extra
    run_dir = Path(given).expanduser().absolute()
    link = next((p for p in (run_dir, *run_dir.parents) if p.is_symlink() and not p.exists()), None)
    if link is not None:
        raise UserError(f"{key}={given} goes through a dangling symlink ({link} -> {os.readlink(link)}); "
                        f"remove it or choose another {key}")
    ancestor = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if not ancestor.is_dir():
        raise UserError(f"{key}={given} cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{key}={given} is not writable (no write permission on {ancestor}); choose another {key}")
    if multirun:  # an earlier sweep's dir: rerun it, skipping finished jobs, resuming the others (sweeps.job)
        return extra
    if ancestor != run_dir:  # Hydra will create it: a run refused in its job removes what was created
        created = next(p for p in (run_dir, *run_dir.parents) if p.parent == ancestor)
        extra.append(f"++hydra.job.env_set.{CREATED_ENV}={_quoted(str(created))}")
    if continues is None or not holds_run(run_dir):
        return extra
    return extra + continues(run_dir, given, values)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _resolve(key: str, overrides: list[str]) -> str:
    """The value of `key` (hydra.run.dir or hydra.sweep.dir) after composition and interpolation."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from ganrun.config.compose import compose
    from ganrun.errors import user_error_message

    try:
        cfg = compose("train", overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)  # for ${hydra:...} interpolations
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs
        message = user_error_message(exc)
        if message is None:
            raise
        raise UserError(f"{key} cannot be resolved before the run starts: {message}") from None
    return str(value)


def own(run_dir: Path) -> "RunDirLock":
    """The OS lock that makes `run_dir` this run's for its whole life (see RunDirLock)."""
    return RunDirLock(run_dir)


class RunDirLock:
    """An exclusive flock on the run dir itself, held while the run lives; released by the OS on any exit.

    Nothing is written for it (the lock is on the directory's inode); a second run there is refused
    in one line naming the process that holds it (read from /proc/locks).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.fd: Optional[int] = None

    def __enter__(self) -> "RunDirLock":
        import fcntl

        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder(self.run_dir)
            who = f"PID {pid}" if pid else "another process"
            raise UserError(f"hydra.run.dir={self.run_dir} is in use by another ganrun run ({who} holds its lock); "
                            "wait for it to end or choose another hydra.run.dir") from None
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def holder(path: Path) -> Optional[int]:
    """The PID holding a flock on `path` (a line of /proc/locks: `1: FLOCK ADVISORY WRITE <pid> MAJ:MIN:INODE ...`)."""
    st = os.stat(path)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == inode:
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def remove_if_created(run_dir: Path) -> None:
    """After a refused run: remove the empty dirs Hydra created for it (down from the guard's record)."""
    created = os.environ.get(CREATED_ENV)
    if not created:
        return
    top, p = Path(created).absolute(), Path(run_dir).absolute()
    while True:
        try:
            p.rmdir()  # only an empty dir
        except OSError:
            return
        if p == top or top not in p.parents:
            return
        p = p.parent


def check_train_run_dir(overrides: list[str]) -> list[str]:
    """`check_run_dir`, refusing a run dir that holds an earlier run's checkpoints unless resumed in place.

    `hydra.run.dir=<dir of an earlier run>` is allowed only to continue that run in place
    (`trainer.resume=<the same dir>` or `trainer.resume=auto`); its original `.hydra/` is then kept and this invocation's
    config goes to `.hydra/resume-<time>/` (returned as an extra override).
    """
    check_torchrun(overrides)
    return check_run_dir(overrides, continues=_resumes_in_place)


def check_torchrun(overrides: list[str]) -> None:
    """Under torchrun every rank runs Hydra: they must share one fixed run dir (`${now:}` differs per rank).

    Only rank 0 writes the run's record and files (`ganrun train` writes `.hydra/` itself, on rank
    0). The ranks that `trainer.devices=N` spawns never pass here (they skip Hydra).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "GANRUN_RANKS_FROM" in os.environ:
        return
    if any(o in ("-m", "--multirun") for o in overrides):
        raise UserError("under torchrun ganrun trains one run on all processes: drop -m (sweeps of multi-GPU "
                        "runs use trainer.devices=N, which spawns each run's processes itself)")
    given = {o.key_or_group: o.value() for o in parse(overrides)}.get("hydra.run.dir")
    if not isinstance(given, str) or "${" in given:
        raise UserError("under torchrun every rank runs Hydra, and the default run dir (a time stamp) differs "
                        "per rank: pass a fixed hydra.run.dir=<dir>")


def _resumes_in_place(run_dir: Path, given: str, values: dict[str, Any]) -> list[str]:
    resume = values.get("trainer.resume")
    if isinstance(resume, str):
        from ganrun.train.checkpoint import AUTO_RESUME, CHECKPOINT_DIR, LAST

        # in place: resume=auto, the run dir itself (its newest checkpoint that verifies) or its last.pt
        if resume == AUTO_RESUME or Path(resume).expanduser().absolute().resolve() in (
                run_dir.resolve(), (run_dir / CHECKPOINT_DIR / LAST).resolve()):
            # the run's own .hydra/ is kept; this invocation's record goes beside it
            return [f"++hydra.job.env_set.{RECORD_ENV}=.hydra/resume-{time.strftime('%Y%m%d-%H%M%S')}"]
    raise UserError(f"hydra.run.dir={given} already holds a run (checkpoints/); choose another hydra.run.dir, "
                    f"or continue that run in place with {command([override('trainer.resume', given)])}")
