"""`ganrun train`: wire config → builders → loop → observers, and return the final metrics."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.config.schema import TrainAppConfig
from ganrun.config.validate import validate
from ganrun.data import ArrayDataset, DataSpec, build_dataset, to_model_range
from ganrun.data.loader import BatchSource
from ganrun.errors import Interrupted, UserError
from ganrun.losses import build_loss, check_discriminator
from ganrun.models import build_models, count_parameters
from ganrun.commands.evaluation import Evaluator, metric_tag
from ganrun.observe.console import Console, FractionProgress, print_config_tree
from ganrun.observe.health import Health
from ganrun.observe.images import image_grid, save_png, scatter_plot
from ganrun.observe.stats import Stats
from ganrun.observe.tensorboard import TensorBoard
from ganrun.optim import build_optimizers
from ganrun.sweeps.record import Tracker, protocol_name
from ganrun.train import checkpoint as ckpt
from ganrun.train.fast import accelerate
from ganrun.train.loop import Schedule, TrainingDiverged, train_loop
from ganrun.train.signals import StopOnSignal
from ganrun.train.step import GanStep, StepSettings

SCATTER_SAMPLES = 2500  # points in the 2-D scatter plots (the PacGAN/VEEGAN sample size)


def run(cfg: DictConfig) -> Optional[float]:
    """Hydra task function: the run dir and overrides come from Hydra's runtime config.

    Returns the run's best primary metric (what a sweeper minimizes; +inf for a diverged or
    failed sweep job); result.json records the verdict (ganrun.sweeps.job).
    """
    from hydra.core.hydra_config import HydraConfig

    from hydra.types import RunMode

    from ganrun.sweeps.job import SweepJob, run_job

    hc = HydraConfig.get()
    run_dir, overrides = Path(hc.runtime.output_dir), list(hc.overrides.task)
    sweep = None
    if hc.mode == RunMode.MULTIRUN:
        sweep = SweepJob(hc.job.num, hc.launcher, cfg.device.name, cfg.trainer.jobs_per_gpu)
        if cfg.trainer.resume is None:  # a rerun of the sweep continues this job from its own last.pt
            cfg.trainer.resume = ckpt.AUTO_RESUME
    return run_job(lambda tracker: train(cfg, run_dir, overrides, tracker), run_dir, overrides, classify_failure,
                   sweep=sweep, tensorboard=bool(cfg.logger.tensorboard))


def classify_failure(exc: BaseException) -> tuple[str, Optional[str]]:
    """A job's failure for its result.json: diverged or failed, and the user-error line (None: a bug)."""
    from ganrun.cli import user_error_message

    return ("diverged" if isinstance(exc, TrainingDiverged) else "failed"), user_error_message(exc)


def to_typed(cfg: DictConfig) -> TrainAppConfig:
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, TrainAppConfig), type(typed)
    validate(typed)
    return typed


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def total_steps(t, dataset_size: int) -> int:
    if t.max_steps is not None:
        return t.max_steps
    per_epoch = max(1, dataset_size // (t.batch_size * t.n_critic))
    return max(1, round(t.epochs * per_epoch))


def fixed_inputs(G, spec: DataSpec, n: int, seed: int, device: torch.device):
    """The sample grid's noise (and labels: one row per class) from a seeded generator."""
    gen = torch.Generator().manual_seed(seed + 1)
    if not spec.is_image:
        n = SCATTER_SAMPLES
    c = None
    if G.num_classes:
        cols = max(1, n // G.num_classes)
        c = torch.arange(G.num_classes).repeat_interleave(cols)
        n = len(c)
    z = torch.randn(n, G.latent_dim, generator=gen)
    return z.to(device), None if c is None else c.to(device)


@torch.no_grad()
def generate(G, z: torch.Tensor, c: Optional[torch.Tensor], batch: int = 1000) -> torch.Tensor:
    was_training = G.training
    G.eval()
    out = torch.cat([G(z[i : i + batch], None if c is None else c[i : i + batch]).float()
                     for i in range(0, len(z), batch)])
    G.train(was_training)
    return out


def render(samples: torch.Tensor, spec: DataSpec, data: torch.Tensor, nrow: Optional[int]) -> np.ndarray:
    if spec.is_image:
        return image_grid(samples, nrow=nrow)
    return scatter_plot(samples, data[:SCATTER_SAMPLES * 4])


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
    health: Optional[Health] = None
    best: Optional[float] = None  # best primary metric so far (lower is better)
    tracker: Optional[Tracker] = None  # the run's record for result.json
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
        spec = self.dataset.spec
        fakes = generate(self.sampler, self.fixed_z, self.fixed_c)
        nrow = len(fakes) // self.sampler.num_classes if self.sampler.num_classes else None
        img = render(fakes, spec, self.dataset.data, nrow)
        self.tb.image("samples/fixed_noise", img, step)
        save_png(img, self.run_dir / "samples" / f"fakes_{step:07d}.png")
        self.tb.flush()

    def evaluate(self, step: int, nimg: int) -> Optional[dict[str, float]]:
        """Metrics of the sampling G; keeps checkpoints/best.pt at the best primary metric."""
        if self.make_evaluator is None:
            return None
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
            self.tracker.evaluated(step, nimg, name, results, {**ev.record(), "name": protocol_name(name),
                                                                "resolution": list(self.dataset.spec.shape)})
        value = sign * results[name]
        if self.best is None or value < self.best:
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


def spec_to_dict(spec: DataSpec) -> dict[str, Any]:
    """The DataSpec as plain containers (checkpoints hold no custom classes)."""
    return {"name": spec.name, "kind": spec.kind, "shape": list(spec.shape), "num_classes": spec.num_classes,
            "size": spec.size, "class_names": list(spec.class_names),
            "centers": [list(c) for c in spec.centers], "mode_std": spec.mode_std}


def spec_from_dict(d: dict[str, Any]) -> DataSpec:
    return DataSpec(name=d["name"], kind=d["kind"], shape=tuple(d["shape"]), num_classes=d["num_classes"],
                    size=d["size"], class_names=tuple(d["class_names"]),
                    centers=tuple(tuple(c) for c in d["centers"]), mode_std=d["mode_std"])


def resume_config(cfg: DictConfig, overrides: Sequence[str]) -> tuple[DictConfig, dict[str, Any], list[str]]:
    """Recompose the run being resumed: its own overrides, then today's (which win).

    Returns the config, the checkpoint, and the merged overrides (without trainer.resume), which
    the new checkpoints record so that a later resume recomposes the same run again.
    """
    from ganrun.cli import compose, user_error_message

    state = ckpt.load_checkpoint(cfg.trainer.resume)
    ckpt.check_resumable(state)
    keep = [o for o in overrides if not o.lstrip("+~").startswith("trainer.resume=")]
    merged = [*state.get("overrides", []), *keep]
    try:
        composed = compose("train", [*merged, f"trainer.resume={state['path']}"])
    except Exception as exc:  # noqa: BLE001 - sorted into user errors and bugs
        message = user_error_message(exc)
        if message is None:
            raise
        raise UserError(f"cannot rebuild the run of checkpoint {state['path']} from its overrides "
                        f"{merged}: {message}") from None
    return composed, state, merged


def restore_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any], path: Any, what: str,
                      reconfigured: bool) -> None:
    """Load the optimizer's moments and step counts; keep today's hyperparameters if the optimizer
    config changed on resume.

    `load_state_dict` brings back the saved lr, betas, ...; the config is the interface, so
    `trainer.resume=<run> optimizer.lr=1e-5` must really train on with 1e-5. An unchanged config
    keeps the saved param groups as they are (and any scheduler-adjusted lr in them).
    """
    configured = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    ckpt.load_state(opt, state, what, path)
    if reconfigured:
        for group, values in zip(opt.param_groups, configured):
            group.update(values)


def train(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (),
          tracker: Optional[Tracker] = None) -> dict[str, float]:
    """Train a GAN as `cfg` (the composed train config) says; write everything into `run_dir`.

    `tracker` (ganrun.sweeps.record) follows the run for its result.json.
    Returns the last logged scalars (and metrics, when evaluation is on).
    """
    to_typed(cfg)  # fail on a bad value before touching anything
    resumed: Optional[dict[str, Any]] = None
    cfg.trainer.resume = ckpt.auto_resume(cfg.trainer.resume, run_dir)
    if cfg.trainer.resume:
        cfg, resumed, overrides = resume_config(cfg, overrides)
    c = to_typed(cfg)
    run_dir = Path(run_dir)
    last = run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST
    if last.exists() and (resumed is None or Path(resumed["path"]).resolve() != last.resolve()):
        raise UserError(f"{run_dir} already holds a run ({last}); resume it with trainer.resume={run_dir} "
                        "or choose another hydra.run.dir")

    # build: device, data, models, loss, optimizers
    device = pick_device(c.device.name)
    if c.device.deterministic:
        torch.use_deterministic_algorithms(True)
    if c.device.precision == "fp16" and device.type != "cuda":
        raise UserError("device.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    seed_everything(c.seed)
    dataset = build_dataset(c.dataset)
    spec = dataset.spec
    G, D = build_models(c.model, spec)
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).requires_grad_(False) if c.trainer.ema_decay > 0 else None
    loss = build_loss(c.loss)
    check_discriminator(loss, D)
    opt_G, opt_D = build_optimizers(c.optimizer, G, D)
    source = BatchSource(dataset, c.trainer.batch_size, device, seed=c.seed,
                         device_resident=c.dataset.device_resident)
    fixed_z, fixed_c = fixed_inputs(G, spec, c.trainer.num_sample_images, c.seed, device)
    steps = total_steps(c.trainer, spec.size)

    # restore
    start_step, start_nimg = 0, 0
    if resumed is not None:
        ckpt.check_identity(resumed, ckpt.model_identity(c.model, spec))
        path = resumed["path"]
        ckpt.load_state(G, resumed["G"], "generator", path)
        ckpt.load_state(D, resumed["D"], "discriminator", path)
        if G_ema is not None and resumed.get("G_ema") is not None:
            ckpt.load_state(G_ema, resumed["G_ema"], "generator EMA", path)
        reconfigured = OmegaConf.to_container(cfg.optimizer, resolve=True) != resumed["config"].get("optimizer")
        restore_optimizer(opt_G, resumed["opt_G"], path, "generator optimizer", reconfigured)
        restore_optimizer(opt_D, resumed["opt_D"], path, "discriminator optimizer", reconfigured)
        source.load_state_dict(resumed["rng"]["data"])
        torch.set_rng_state(resumed["rng"]["torch"])
        if device.type == "cuda" and resumed["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(resumed["rng"]["cuda"])
        fixed_z = resumed["fixed_z"].to(device)
        fixed_c = None if resumed["fixed_c"] is None else resumed["fixed_c"].to(device)
        start_step, start_nimg = int(resumed["step"]), int(resumed["nimg"])

    # observers
    resolved = OmegaConf.to_container(cfg, resolve=True)
    console = Console(c.logger.progress, steps, start_step)
    if c.logger.print_config and c.logger.progress != "none":
        print_config_tree(resolved)
    for note in dataset.notes:
        console.message(f"warning: {note}", style="warning")
    console.message(
        f"{c.model.name}: G {count_parameters(G):,} params, D {count_parameters(D):,} params | "
        f"{spec.name} {spec.size:,} × {tuple(spec.shape)} on {device} | {steps:,} steps"
        + (f" (resuming at {start_step:,})" if start_step else "")
        + f" | run dir {run_dir}"
    )
    tb = TensorBoard(run_dir, enabled=c.logger.tensorboard, purge_step=start_step + 1 if start_step else None)
    if start_step == 0:
        tb.text("config", "```yaml\n" + OmegaConf.to_yaml(cfg) + "```")
        if spec.is_image:
            tb.image("samples/reals", image_grid(to_model_range(dataset.data[: len(fixed_z)])), 0)
    record = {"config": resolved, "overrides": list(overrides), "model_id": ckpt.model_identity(c.model, spec),
              "spec": spec_to_dict(spec)}

    def make_evaluator():
        progress = FractionProgress("fitting the domain classifier", c.logger.progress)
        try:
            return Evaluator(c.eval, c.dataset, spec, device, progress=progress)
        finally:
            progress.close()

    jobs = RunJobs(run_dir, tb, console, G, D, G_ema, opt_G, opt_D, source, dataset, fixed_z, fixed_c, record,
                   c.trainer.keep_last, c.trainer.checkpoint_every,
                   make_evaluator=make_evaluator if c.eval.every else None, health=Health(), tracker=tracker)
    if resumed is not None:
        jobs.best = resumed.get("best_metric")
    if start_step == 0:
        jobs.samples(0)

    # train
    step_fn = GanStep(G, D, G_ema, loss, opt_G, opt_D,
                      StepSettings(c.trainer.n_critic, c.trainer.ema_decay, c.dataset.flip, c.device.precision), device)
    step_fn = accelerate(step_fn, c.trainer.compile, channels_last=c.device.channels_last,
                         notify=lambda text: console.message(text, style="warning"))
    if tracker is not None:
        tracker.begin(resumed.get("result") if resumed is not None else None)
    schedule = Schedule(steps, c.trainer.log_every, c.trainer.sample_every, c.trainer.checkpoint_every, c.eval.every)
    try:
        with StopOnSignal() as stop:
            result = train_loop(
                step_fn, lambda: [source.next() for _ in range(c.trainer.n_critic)], Stats(), schedule, jobs,
                start_step=start_step, start_nimg=start_nimg, images_per_step=c.trainer.batch_size,
                progress=console.advance, should_stop=stop,
            )
    except TrainingDiverged as exc:
        good = jobs.last_saved or (resumed and resumed["path"])
        hint = (f"; to go on from {good} with a lower rate: ganrun train trainer.resume={good} "
                f"optimizer.lr={c.optimizer.lr / 10:g}") if good else ""
        raise TrainingDiverged(f"{exc}{hint}") from None
    finally:
        console.close()
        tb.close()
    if stop.signum is not None:
        raise Interrupted(f"stopped by {stop.name} after step {int(result['step']):,}; checkpoint "
                          f"{jobs.last_saved}; resume with: ganrun train trainer.resume={run_dir}", stop.signum)
    console.message(f"done: {int(result['step']):,} steps; checkpoint {run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST}")
    return result

