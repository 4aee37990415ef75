"""The training loop: a fast step, and a tick for host work every few steps.

The step is pure device work. Everything that needs the host (reading scalars, rendering sample
grids, evaluation, checkpoints) happens in the tick, at fixed step intervals, in this order:
log → samples → evaluate → checkpoint. The only callbacks are `progress` and `should_stop`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

from ganrun.errors import UserError


@dataclass(frozen=True)
class Schedule:
    total_steps: int  # G steps to reach
    log_every: int  # steps between scalar reads (the host sync)
    sample_every: int  # steps between sample grids; 0: only at the end
    checkpoint_every: int  # steps between checkpoints; the end always saves
    eval_every: int  # steps between evaluations; 0: off


class Jobs(Protocol):
    """The periodic host work of a run, called by the loop at tick boundaries."""

    def log(self, step: int, values: dict[str, float]) -> None: ...
    def samples(self, step: int) -> None: ...
    def evaluate(self, step: int) -> Optional[dict[str, float]]: ...
    def checkpoint(self, step: int, nimg: int) -> None: ...


class TrainingDiverged(UserError):
    """A loss became NaN or Inf."""


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def train_loop(step_fn: Callable, next_batches: Callable[[], list], stats, schedule: Schedule, jobs: Jobs, *,
               start_step: int, start_nimg: int, images_per_step: int,
               progress: Callable[[int], None], should_stop: Callable[[], bool]) -> dict[str, float]:
    """Run steps start_step+1 … total_steps. Returns the last logged values."""
    step, nimg = start_step, start_nimg
    last: dict[str, float] = {}
    tick_time, tick_nimg = time.perf_counter(), nimg
    metrics: Optional[dict[str, float]] = None
    while step < schedule.total_steps:
        # the fast part: one GAN update, no host sync
        stats.report(step_fn(next_batches(), step))
        step += 1
        nimg += images_per_step
        progress(step)
        stopping = should_stop()
        final = step == schedule.total_steps or stopping

        # log: CPU-GPU sync point, once per log_every steps
        if _due(step, schedule.log_every) or final:
            values = stats.collect()
            now = time.perf_counter()
            values["speed/images_per_s"] = (nimg - tick_nimg) / max(now - tick_time, 1e-9)
            tick_time, tick_nimg = now, nimg
            bad = [k for k, v in values.items() if k.startswith("loss/") and not math.isfinite(v)]
            if bad:
                raise TrainingDiverged(
                    f"{bad[0]} became {values[bad[0]]} by step {step}; training stopped and the last "
                    "checkpoint was kept. Lower optimizer.lr, or try loss.gp_weight / model.spectral_norm"
                )
            jobs.log(step, values)
            last = values
        if _due(step, schedule.sample_every) or final:
            jobs.samples(step)
        if schedule.eval_every and (_due(step, schedule.eval_every) or final):
            metrics = jobs.evaluate(step) or metrics
        if _due(step, schedule.checkpoint_every) or final:
            jobs.checkpoint(step, nimg)
        if stopping:
            break
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return {**last, **(metrics or {}), "step": float(step)}
