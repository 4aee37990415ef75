"""Hydra callback: a sweep writes its report (report.md, report.csv, report.png) as it goes.

Built from the files the runs left, never from memory: Hydra calls `on_job_end` in the process
that ran the job (a joblib/loky worker for parallel sweeps, where the launcher's memory is out of
reach) and never calls `on_multirun_end` when a job raised. So the report is rewritten after
every job (under a file lock, from every result.json in the sweep dir) and once more at the end:
a sweep that crashed or was killed still has the report of the jobs it finished, and its rerun
completes it. Configured in configs/hydra/ganrun.yaml (`hydra.callbacks.sweep_report`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode


class SweepReport(Callback):
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        if self.enabled and config.hydra.mode == RunMode.MULTIRUN:
            self._write(Path(config.hydra.sweep.dir), quiet=True)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.enabled:
            self._write(Path(config.hydra.sweep.dir), quiet=False)

    @staticmethod
    def _write(sweep_dir: Path, quiet: bool) -> None:
        from ganrun.sweeps.render import print_report, write_report

        if not sweep_dir.is_dir():
            return
        try:
            report = write_report(sweep_dir)
        except Exception as exc:  # noqa: BLE001 - a report problem must not fail the sweep it reports
            print(f"ganrun: warning: could not write the sweep report in {sweep_dir}: {exc}", file=sys.stderr)
            return
        if report is not None and not quiet:
            print_report(report)
            print(f"report: {sweep_dir / 'report.md'} (also report.csv, report.png); "
                  f"again any time: ganrun report {sweep_dir}", flush=True)
