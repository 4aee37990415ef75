"""The run's periodic host work, called from the loop's tick: logging, samples, evaluation, checkpoints."""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ganrun.data import ArrayDataset
from ganrun.data.loader import BatchSource
from ganrun.evaluation import metric_tag
from ganrun.observe.console import Console
from ganrun.observe.health import Health
from ganrun.observe.images import render, save_png
from ganrun.observe.tensorboard import TensorBoard
from ganrun.runtime import SCATTER_SAMPLES, generate, grid_rows
from ganrun.train import checkpoint as ckpt
from ganrun.train.loop import TrainingDiverged
from ganrun.train.signals import StopOnSignal


@dataclass
class RunJobs:
    """The run's periodic host work (the loop's `Jobs`): logging, samples, checkpoints."""

    run_dir: Path
    tb: TensorBoard
    console: Console
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: Optional[torch.nn.Module]
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    source: BatchSource
    dataset: ArrayDataset
    fixed_z: torch.Tensor
    fixed_c: Optional[torch.Tensor]
    record: dict[str, Any]  # config, overrides, model identity: written into every checkpoint
    keep_last: int
    checkpoint_every: int
    make_evaluator: Optional[Callable[[], Any]] = None  # builds the Evaluator on first need
    stop: StopOnSignal = field(default_factory=StopOnSignal)  # long host work runs in stop.now(...)
    health: Optional[Health] = None
    best: Optional[float] = None  # best primary metric so far (lower is better)
    tracker: Any = None  # ganrun.sweeps.record.Tracker: the run's record for result.json; None: none kept
    last_saved: Optional[Path] = None  # the newest checkpoint this run wrote
    _evaluator: Any = None

    @property
    def sampler(self):
        return self.G_ema if self.G_ema is not None else self.G

    def log(self, step: int, values: dict[str, float]) -> None:
        self.tb.scalars(step, values)
        self.console.log(step, values)
        if self.tracker:
            self.tracker.logged(step, values)
        self._warn(step, self.health.check_scalars(values) if self.health else [])

    def _warn(self, step: int, warnings: list[str]) -> None:
        for text in warnings:
            self.console.message(f"warning (step {step}): {text}", style="warning")
            self.tb.text("health", f"step {step}: {text}", step)

    def samples(self, step: int) -> None:
        with self.stop.now("the sample grid"):
            self._samples(step)

    def _samples(self, step: int) -> None:
        fakes = generate(self.sampler, self.fixed_z, self.fixed_c)
        img = render(fakes, self.dataset.data[: SCATTER_SAMPLES * 4], grid_rows(len(fakes), self.sampler.num_classes))
        self.tb.image("samples/fixed_noise", img, step)
        save_png(img, self.run_dir / "samples" / f"fakes_{step:07d}.png")
        self.tb.flush()

    def evaluate(self, step: int, nimg: int) -> Optional[dict[str, float]]:
        """Metrics of the sampling G; keeps checkpoints/best.pt at the best primary metric."""
        if self.make_evaluator is None:
            return None
        with self.stop.now("the evaluation" if self._evaluator else "the first evaluation (fitting the feature network)"):
            if self._evaluator is None:
                self._evaluator = self.make_evaluator()
            ev = self._evaluator
            results = ev.evaluate(self.sampler)
        self.tb.scalars(step, {metric_tag(k): v for k, v in results.items()})
        self.console.message(f"eval at step {step}: " + "  ".join(
            f"{k} {v:.4g}" for k, v in results.items() if k != "eval/seconds"))
        if self.health:
            self._warn(step, self.health.check_metrics(results))
        name, sign = ev.primary()
        if self.tracker:
            self.tracker.evaluated(step, nimg, name, results, {**ev.record(), "resolution": list(self.dataset.spec.shape)})
        value = sign * results[name]
        # a nan/inf evaluation (a diverged G) is never the best, and never blocks a later one
        if math.isfinite(value) and (self.best is None or not math.isfinite(self.best) or value < self.best):
            self.best = value
            state = self.state(step, nimg)
            state["best"] = {"metric": name, "value": results[name]}
            ckpt.save_checkpoint(self.run_dir / ckpt.CHECKPOINT_DIR / ckpt.BEST, state)
        return results

    def state(self, step: int, nimg: int) -> dict[str, Any]:
        return {
            "step": step,
            "nimg": nimg,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": None if self.G_ema is None else self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "data": self.source.state_dict(),
            },
            "fixed_z": self.fixed_z.cpu(),
            "fixed_c": None if self.fixed_c is None else self.fixed_c.cpu(),
            "best_metric": self.best,
            "result": None if self.tracker is None else self.tracker.state_dict(),
            **self.record,
        }

    def checkpoint(self, step: int, nimg: int) -> None:
        """last.pt every time; step_<step>.pt at checkpoint_every multiples, the newest keep_last kept."""
        nets = [("G", self.G), ("D", self.D)] + ([("G_ema", self.G_ema)] if self.G_ema is not None else [])
        for name, net in nets:  # one host sync per checkpoint: never save a diverged state
            if not bool(torch.stack([p.detach().isfinite().all() for p in net.parameters()]).all()):
                raise TrainingDiverged(f"the weights of {name} became NaN/Inf by step {step}; training stopped "
                                       "before writing them")
        folder = self.run_dir / ckpt.CHECKPOINT_DIR
        if self.tracker:
            self.tracker.saved(step, nimg)
        state = self.state(step, nimg)
        if self.keep_last > 0 and step % self.checkpoint_every == 0:
            ckpt.save_checkpoint(folder / f"step_{step:07d}.pt", state)
        ckpt.save_checkpoint(folder / ckpt.LAST, state)
        self.last_saved = folder / ckpt.LAST
        # prune by listing, so files left by an earlier segment of this run (resumed in place) count too
        steps = sorted(folder.glob(ckpt.STEP_GLOB), key=ckpt.step_of)
        for old in steps[: max(0, len(steps) - self.keep_last)]:
            old.unlink(missing_ok=True)
