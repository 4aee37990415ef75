"""The training loop: a fast step, and a tick for host work every few steps.

The step is pure device work. Everything that needs the host (reading scalars, rendering sample
grids, evaluation, checkpoints) happens in the tick, at fixed step intervals, in this order:
log → samples → evaluate → checkpoint. The only callbacks are `progress` and `should_stop`.

The checkpoint is the last job of a tick on purpose: it captures the RNG states after every job
that might draw from them, so a resumed run continues with exactly the random stream the
uninterrupted run would have used. When `should_stop` turns true (a signal), the tick runs only
the jobs that leave no trace in that stream (log, checkpoint), and the loop returns.
Losses and gradient norms are checked for NaN/Inf at every log and every checkpoint, before the
checkpoint is written, so no checkpoint ever holds a diverged state.
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
    def evaluate(self, step: int, nimg: int) -> Optional[dict[str, float]]: ...
    def checkpoint(self, step: int, nimg: int) -> None: ...


class TrainingDiverged(UserError):
    """A loss, a gradient norm or a weight became NaN or Inf."""


CHECKED = ("loss/", "grad_norm/")  # stats whose non-finite value means the run diverged


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def train_loop(step_fn: Callable, next_batch: Callable[[], object], stats, schedule: Schedule, jobs: Jobs, *,
               start_step: int, start_nimg: int, images_per_batch: int,
               progress: Callable[[int], None], should_stop: Callable[[], bool]) -> dict[str, float]:
    """Run steps start_step+1 … total_steps. Returns the last logged values.

    Each step takes `step_fn.batches_per_step` real batches (n_critic for GanStep) from
    `next_batch`; `nimg` and `speed/images_per_s` count those real images, the images D sees.
    """
    batches_per_step = step_fn.batches_per_step
    step, nimg = start_step, start_nimg
    last: dict[str, float] = {}
    tick_time, tick_nimg = time.perf_counter(), nimg
    metrics: Optional[dict[str, float]] = None
    checked, saved = start_step, start_step  # steps of the last finite check and the last checkpoint
    while step < schedule.total_steps:
        # the fast part: one GAN update, no host sync
        stats.report(step_fn([next_batch() for _ in range(batches_per_step)], step))
        step += 1
        nimg += images_per_batch * batches_per_step
        progress(step)
        stopping = should_stop()
        final = step == schedule.total_steps
        save = _due(step, schedule.checkpoint_every) or final or stopping

        # log: CPU-GPU sync point, once per log_every steps and before every checkpoint
        if _due(step, schedule.log_every) or save:
            values = stats.collect()
            now = time.perf_counter()
            values["speed/images_per_s"] = (nimg - tick_nimg) / max(now - tick_time, 1e-9)  # real images
            tick_time, tick_nimg = now, nimg
            bad = sorted((k for k, v in values.items() if k.startswith(CHECKED) and not math.isfinite(v)),
                         key=lambda k: not k.startswith("loss/"))  # name a loss when one is bad
            if bad:
                kept = f"the last checkpoint (step {saved}) was kept untouched" if saved else "no checkpoint was written"
                raise TrainingDiverged(
                    f"{bad[0]} became {values[bad[0]]} between step {checked + 1} and step {step}; training "
                    f"stopped and {kept}. Lower optimizer.lr, or try loss.gp_weight / model.spectral_norm"
                )
            checked = step
            jobs.log(step, values)
            last = values
        if (_due(step, schedule.sample_every) or final) and not stopping:
            jobs.samples(step)
        if schedule.eval_every and (_due(step, schedule.eval_every) or final) and not stopping:
            metrics = jobs.evaluate(step, nimg) or metrics
        if save:
            jobs.checkpoint(step, nimg)
            saved = step
        if stopping:
            break
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return {**last, **(metrics or {}), "step": float(step)}
