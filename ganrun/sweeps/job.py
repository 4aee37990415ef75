"""One run as a job: place it, skip it when a rerun finds it finished, train it, record its verdict.

`run_job` wraps the train command's work. Whatever the end (done, diverged, failed,
interrupted), the run's result.json says so, and its overrides and final metrics go to
TensorBoard's HParams dashboard. The return value is what a sweeper minimizes: the best primary
metric (+inf for a diverged or failed run).

In a sweep (`ganrun train -m ...`) a diverged or failed job must not end the sweep: its status
is recorded, one line (a user error) or the traceback (a bug) goes to stderr, and the job
returns +inf so the next one runs. A stopped job (SIGINT/SIGTERM) still ends the sweep. A sweep
run again with the same hydra.sweep.dir skips the jobs whose result.json says done or diverged
(their verdict would not change) and runs the others, from their own checkpoints/last.pt when
they have one (trainer.resume=auto). A single run keeps the CLI's rules: its errors propagate
(one line + exit 2, or a traceback), after result.json is written if training had begun.
"""

from __future__ import annotations

import math
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ganrun.sweeps.placement import Placement, place_job
from ganrun.sweeps.record import FINISHED, Tracker, metric_kind, override_values, read_result

# exc -> (status, message): "diverged"/"failed" and the one-line message, or None for a bug
Classify = Callable[[BaseException], tuple[str, Optional[str]]]


@dataclass(frozen=True)
class SweepJob:
    """Where a job sits in its sweep (from Hydra's runtime config)."""

    num: int  # hydra.job.num
    launcher: Any  # hydra.launcher config (joblib: n_jobs)
    device: str  # device.name
    jobs_per_gpu: int  # trainer.jobs_per_gpu


def finished(run_dir: Path) -> Optional[dict]:
    """The result of a job that a rerun of its sweep skips (done or diverged), else None."""
    result = read_result(run_dir)
    return result if result is not None and result["status"] in FINISHED else None


def prepare(sweep: SweepJob) -> Placement:
    return place_job(sweep.num, sweep.launcher, sweep.device, sweep.jobs_per_gpu)


def run_job(train: Callable[[Tracker], Any], run_dir: Path, overrides: list[str], classify: Classify, *,
            sweep: Optional[SweepJob] = None, tensorboard: bool = True) -> Optional[float]:
    """Run `train(tracker)` as one job of a sweep (`sweep` given) or as a single run (see the module doc)."""
    run_dir = Path(run_dir)
    if sweep is not None:
        earlier = finished(run_dir)
        if earlier is not None and override_values(earlier.get("overrides") or []) != override_values(overrides):
            print(f"ganrun: job {sweep.num}: {run_dir} holds a finished run with other overrides; left untouched "
                  "(rerun a sweep with the arguments it was started with, or choose another hydra.sweep.dir)",
                  file=sys.stderr, flush=True)
            return math.inf
        if earlier is not None:
            print(f"ganrun: job {sweep.num} ({run_dir.name}) is already {earlier['status']} (its result.json); "
                  "skipped", file=sys.stderr, flush=True)
            return earlier.get("objective")
        prepare(sweep)
    tracker = Tracker(run_dir, list(overrides))
    try:
        train(tracker)
    except KeyboardInterrupt:  # a signal (Interrupted) or Ctrl-C: recorded, and the sweep stops too
        if tracker.begun or sweep is not None:
            finish(tracker, "interrupted", "stopped by a signal", tensorboard=False)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of a job is recorded; bugs keep their traceback
        status, message = classify(exc)
        error = message or "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if sweep is None:
            if tracker.begun:
                finish(tracker, status, error, tensorboard=tensorboard)
            raise
        finish(tracker, status, error, tensorboard=tensorboard and tracker.begun)
        if message is None:
            traceback.print_exc(file=sys.stderr)
        print(f"ganrun: job {sweep.num} ({run_dir.name}) {status}: {error.splitlines()[0]}; the sweep goes on",
              file=sys.stderr, flush=True)
        return math.inf
    return finish(tracker, "done", None, tensorboard=tensorboard)


def finish(tracker: Tracker, status: str, error: Optional[str], *, tensorboard: bool) -> Optional[float]:
    tracker.write(status, error)
    if tensorboard:
        from ganrun.observe.hparams import write_hparams

        write_hparams(tracker.run_dir, override_values(tracker.overrides) or {"run": tracker.run_dir.name},
                      hparam_metrics(tracker, status), tracker.step, failed=status != "done")
    return tracker.objective(status)


def hparam_metrics(tracker: Tracker, status: str) -> dict[str, float]:
    """`hparam/best_fid` (best primary), `hparam/<metric>` (last evaluation), steps and wall time."""
    out: dict[str, float] = {}
    if tracker.primary:
        best = tracker.objective(status)
        out[f"hparam/best_{metric_kind(tracker.primary)}"] = math.inf if best is None else best
    for name, value in tracker.metrics.items():
        out["hparam/" + name.replace("/", "_")] = value
    out["hparam/steps"] = float(tracker.step)
    out["hparam/wall_seconds"] = tracker.wall_seconds
    return out
