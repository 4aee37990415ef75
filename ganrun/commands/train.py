"""`ganrun train`: wire config → build → loop → observers, and return the final metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from ganrun.atomic import atomic_write_bytes
from ganrun.config.compose import to_typed
from ganrun.config.schema import TrainAppConfig
from ganrun.data import to_model_range
from ganrun.errors import Interrupted, user_error_message
from ganrun.evaluation import Evaluator
from ganrun.models import count_parameters
from ganrun.observe.console import Console, FractionProgress, print_config_tree
from ganrun.observe.health import Health
from ganrun.observe.images import image_grid
from ganrun.observe.stats import Stats
from ganrun.observe.tensorboard import TensorBoard
from ganrun.rundir import RECORD_ENV, own, remove_if_created
from ganrun.runtime import pick_device, set_cpu_threads
from ganrun.shell import command, override
from ganrun.sweeps.record import Tracker
from ganrun.train import checkpoint as ckpt
from ganrun.train.build import BuiltRun, build_run
from ganrun.train.jobs import RunJobs
from ganrun.train.loop import Schedule, TrainingDiverged, train_loop
from ganrun.train.resume import check_run_dir_free, clean_stale_writes, restore, resume_config


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
    with own(run_dir):  # this run's, for its whole life: a second run here is refused, naming this PID
        try:
            return run_job(lambda tracker: train(cfg, run_dir, overrides, tracker,
                                                 on_ready=lambda: write_record(run_dir, cfg, hc)),
                           run_dir, overrides, classify_failure, sweep=sweep,
                           tensorboard=bool(cfg.logger.tensorboard))
        except BaseException:
            remove_if_created(run_dir)  # a refused run leaves no trace (the dirs are removed only if empty)
            raise


def classify_failure(exc: BaseException) -> tuple[str, Optional[str]]:
    """A job's failure for its result.json: diverged or failed, and the user-error line (None: a bug)."""
    return ("diverged" if isinstance(exc, TrainingDiverged) else "failed"), user_error_message(exc)


def write_record(run_dir: Path, cfg: DictConfig, hc) -> None:
    """The run's Hydra record (config.yaml, hydra.yaml, overrides.yaml), written once every check passed.

    Hydra would write it before the job starts (`hydra.output_subdir` is null for train, so it does
    not); the files are the ones Hydra writes, in `.hydra/` (or `.hydra/resume-<time>/` for a run
    continued in place, whose own record is kept).
    """
    subdir = os.environ.get(RECORD_ENV)
    if not subdir or hc.output_subdir is not None:
        return  # Hydra wrote it (a user's hydra.output_subdir), or no record was asked for
    folder = run_dir / subdir
    hydra_node = OmegaConf.create({"hydra": OmegaConf.to_container(hc, resolve=False)})
    hydra_node.hydra.output_subdir = subdir
    for name, node in (("config.yaml", cfg), ("hydra.yaml", hydra_node), ("overrides.yaml", hc.overrides.task)):
        atomic_write_bytes(folder / name, OmegaConf.to_yaml(node).encode())


def train(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (), tracker: Optional[Tracker] = None,
          on_ready: Optional[Callable[[], None]] = None) -> dict[str, float]:
    """Train a GAN as `cfg` (the composed train config) says; write everything into `run_dir`.

    `tracker` (ganrun.sweeps.record) follows the run for its result.json. `on_ready` is called once
    every check passed (config, data, sizes, checkpoint), before the first file is written.
    Returns the last logged scalars (and metrics, when evaluation is on).
    """
    resumed: Optional[dict[str, Any]] = None
    cfg.trainer.resume = ckpt.auto_resume(cfg.trainer.resume, run_dir)
    if cfg.trainer.resume:
        cfg, resumed, overrides = resume_config(cfg, overrides)
    c: TrainAppConfig = to_typed(cfg, TrainAppConfig)  # fail on a bad value before touching anything
    run_dir = Path(run_dir)
    check_run_dir_free(run_dir, resumed)
    device = pick_device(c.device.name)
    set_cpu_threads(device, c.device.cpu_threads)
    built = build_run(c, device)
    model_id = ckpt.model_identity(c.model, built.spec)
    start_step, start_nimg = restore(built, resumed, cfg, model_id, device) if resumed else (0, 0)
    if on_ready is not None:
        on_ready()
    stale = clean_stale_writes(run_dir)  # the run dir is this run's (locked): what a killed writer left goes

    run_dir.mkdir(parents=True, exist_ok=True)
    console = Console(c.logger.progress, built.steps, start_step, log_file=run_dir / "train.log")
    tb = TensorBoard(run_dir, enabled=c.logger.tensorboard, purge_step=start_step + 1 if start_step else None)
    notes = [f"removed {stale} temp file(s) left by interrupted checkpoint writes"] if stale else []
    if resumed is not None and resumed.get("skipped"):
        notes.append(f"resuming from {Path(resumed['path']).name}; passed over: {'; '.join(resumed['skipped'])}")
    jobs = _jobs(c, cfg, built, run_dir, console, tb, overrides, model_id, start_step, notes)
    if resumed is not None:
        jobs.best = resumed.get("best_metric")
    jobs.tracker = tracker
    if start_step == 0:
        jobs.samples(0)
    if tracker is not None:
        tracker.begin(resumed.get("result") if resumed is not None else None)

    step_fn = built.step_fn(c.trainer.compile, c.device.channels_last,
                            notify=lambda text: console.message(text, style="warning"), start_nimg=start_nimg)
    t = c.trainer
    schedule = Schedule(built.steps, t.log_every, t.sample_every, t.checkpoint_every, c.eval.every)
    try:
        with jobs.stop as stop:
            result = train_loop(step_fn, built.source.next, Stats(), schedule, jobs, start_step=start_step,
                                start_nimg=start_nimg, images_per_batch=t.batch_size, progress=console.advance,
                                should_stop=stop)
            if int(result["step"]) == start_step and resumed is not None and Path(resumed["path"]).name != ckpt.LAST:
                jobs.checkpoint(start_step, start_nimg)  # resumed at the end from a step file: last.pt catches up
    except TrainingDiverged as exc:
        good = jobs.last_saved or (resumed and resumed["path"])
        hint = (f"; to go on from {good} with a lower rate: " + command(
            ["ganrun", "train", override("trainer.resume", good), f"optimizer.lr={c.optimizer.lr / 10:g}"])) if good else ""
        console.record(f"error: {exc}{hint}")
        raise TrainingDiverged(f"{exc}{hint}") from None
    finally:
        console.close()
        tb.close()
    if stop.signum is not None:
        message = (f"stopped by {stop.name} after step {int(result['step']):,}; checkpoint {jobs.last_saved}; "
                   f"resume with: {command(['ganrun', 'train', override('trainer.resume', run_dir)])}")
        console.record(message)
        raise Interrupted(message, stop.signum)
    console.message(f"done: {int(result['step']):,} steps; checkpoint {run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST}")
    return result


def _jobs(c: TrainAppConfig, cfg: DictConfig, built: BuiltRun, run_dir: Path, console: Console, tb: TensorBoard,
          overrides: Sequence[str], model_id: dict[str, Any], start_step: int, notes: list[str]) -> RunJobs:
    """Show the run's header (config, notes, sizes, reals) and build its periodic jobs."""
    spec, device = built.spec, built.device
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if c.logger.print_config and c.logger.progress != "none":
        print_config_tree(resolved)
    for note in [*built.dataset.notes, *notes]:
        console.message(f"warning: {note}", style="warning")
    console.message(
        f"{c.model.name}: G {count_parameters(built.G):,} params, D {count_parameters(built.D):,} params | "
        f"{spec.name} {spec.size:,} × {tuple(spec.shape)} on {device} | {built.steps:,} steps"
        + (f" (resuming at {start_step:,})" if start_step else "")
        + f" | run dir {run_dir}"
    )
    console.message("overrides: " + (command(overrides) or "none (the defaults)"))
    if start_step == 0:
        tb.text("config", "```yaml\n" + OmegaConf.to_yaml(cfg) + "```")
        if spec.is_image:
            tb.image("samples/reals", image_grid(to_model_range(built.dataset.data[: len(built.fixed_z)])), 0)
    record = {"config": resolved, "overrides": list(overrides), "model_id": model_id, "spec": spec.to_dict()}

    def make_evaluator():
        progress = FractionProgress("fitting the domain classifier", c.logger.progress)
        try:
            return Evaluator(c.eval, c.dataset, spec, device, progress=progress)
        finally:
            progress.close()

    return RunJobs(run_dir, tb, console, built.G, built.D, built.G_ema, built.opt_G, built.opt_D, built.source,
                   built.dataset, built.fixed_z, built.fixed_c, record, c.trainer.keep_last,
                   c.trainer.checkpoint_every, make_evaluator=make_evaluator if c.eval.every else None,
                   health=Health())
