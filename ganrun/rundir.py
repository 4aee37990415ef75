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
    values = {o.key_or_group: o.value() for o in parse(overrides) if not o.is_sweep_override()}
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
    if continues is None or not holds_run(run_dir):
        return []
    return continues(run_dir, given, values)


def check_train_run_dir(overrides: list[str]) -> list[str]:
    """`check_run_dir`, refusing a run dir that holds an earlier run's checkpoints unless resumed in place.

    `hydra.run.dir=<dir of an earlier run>` is allowed only to continue that run in place
    (`trainer.resume=<the same dir>` or `trainer.resume=auto`); its original `.hydra/` is then kept and this invocation's
    config goes to `.hydra/resume-<time>/` (returned as an extra override).
    """
    return check_run_dir(overrides, continues=_resumes_in_place)


def _resumes_in_place(run_dir: Path, given: str, values: dict[str, Any]) -> list[str]:
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
