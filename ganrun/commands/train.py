"""`ganrun train`: wire config → build → loop → observers, and return the final metrics."""

from __future__ import annotations

import functools
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
from ganrun.train import distributed
from ganrun.train.build import BuiltRun, build_run
from ganrun.train.jobs import RunJobs
from ganrun.train.loop import Schedule, TrainingDiverged, train_loop
from ganrun.train.resume import check_run_dir_free, clean_stale_writes, restore, resume_config
from ganrun.train.signals import StopOnSignal


def run(cfg: DictConfig) -> Optional[float]:
    """Hydra task function: the run dir and overrides come from Hydra's runtime config.

    Returns the run's best primary metric (what a sweeper minimizes; +inf for a diverged or
    failed sweep job); result.json records the verdict (ganrun.sweeps.job).

    Several ranks (ganrun.train.distributed): with `trainer.devices=N` this job spawns its ranks
    and stays their owner (lock, result.json); under torchrun or a multi-task submitit job every
    rank runs this function, and rank 0 alone owns the run dir and records the verdict.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from ganrun.sweeps.job import SweepJob, finished, run_job

    hc = HydraConfig.get()
    run_dir, overrides = Path(hc.runtime.output_dir), list(hc.overrides.task)
    sweep = None
    if hc.mode == RunMode.MULTIRUN:
        sweep = SweepJob(hc.job.num, hc.launcher, cfg.device.name, cfg.trainer.jobs_per_gpu)
        if cfg.trainer.resume is None:  # a rerun of the sweep continues this job from its own last.pt
            cfg.trainer.resume = ckpt.AUTO_RESUME
    ranks = distributed.ranks_from_env()
    if ranks is not None and ranks.rank != 0:  # torchrun/submitit: rank 0 owns the dir and the verdict
        if sweep is None or finished(run_dir) is None:
            train(cfg, run_dir, overrides)
        return None
    if ranks is None and cfg.trainer.devices > 1:  # this job spawns its ranks and speaks for them
        def work(tracker):
            return run_spawned(cfg, run_dir, overrides, tracker, record_files(run_dir, cfg, hc))
    else:
        def work(tracker):
            return train(cfg, run_dir, overrides, tracker, on_ready=lambda: write_record(run_dir, cfg, hc))
    with own(run_dir):  # this run's, for its whole life: a second run here is refused, naming this PID
        try:
            return run_job(work, run_dir, overrides, classify_failure, sweep=sweep,
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
    write_files(record_files(run_dir, cfg, hc))


def record_files(run_dir: Path, cfg: DictConfig, hc) -> dict[str, bytes]:
    """The record's files (path → contents); none when Hydra wrote it or no record was asked for."""
    subdir = os.environ.get(RECORD_ENV)
    if not subdir or hc.output_subdir is not None:
        return {}  # Hydra wrote it (a user's hydra.output_subdir), or no record was asked for
    folder = run_dir / subdir
    hydra_node = OmegaConf.create({"hydra": OmegaConf.to_container(hc, resolve=False)})
    hydra_node.hydra.output_subdir = subdir
    return {str(folder / name): OmegaConf.to_yaml(node).encode()
            for name, node in (("config.yaml", cfg), ("hydra.yaml", hydra_node), ("overrides.yaml", hc.overrides.task))}


def write_files(files: dict[str, bytes]) -> None:
    for path, data in files.items():
        atomic_write_bytes(Path(path), data)


def run_spawned(cfg: DictConfig, run_dir: Path, overrides: Sequence[str], tracker: Optional[Tracker],
                record: dict[str, bytes]) -> dict[str, float]:
    """`trainer.devices=N`: train on N spawned ranks; rank 0 writes the record and keeps the tracker,
    whose state comes back here (with every outcome) for result.json."""
    from ganrun.train.spawn import run_ranks

    c = to_typed(cfg, TrainAppConfig)  # a bad value fails here, once, before any rank starts
    cpu = pick_device(c.device.name).type == "cpu"
    notes: dict[str, Any] = {}
    try:
        return run_ranks(_rank_train, overrides, run_dir, c.trainer.devices, cpu=cpu, notes=notes,
                         args=(cfg.trainer.resume, record, tracker is not None))
    finally:
        if tracker is not None and notes.get("tracker") is not None:
            tracker.load_state_dict(notes["tracker"])
            tracker.begun = True


def _rank_train(cfg: DictConfig, run_dir: Path, overrides: list[str], rank: int, notes: dict[str, Any],
                resume: Optional[str], record: dict[str, bytes], tracked: bool) -> dict[str, float]:
    """One spawned rank (a module-level function: spawn pickles it by name). Rank 0 writes the
    record once ready, and keeps the tracker (`notes["tracker"]` reads its state for the job)."""
    cfg.trainer.resume = resume  # as the job resolved it (sweep jobs: auto)
    if rank != 0:
        return train(cfg, run_dir, overrides)
    tracker = Tracker(run_dir, list(overrides)) if tracked else None
    if tracker is not None:
        notes["tracker"] = lambda: tracker.state_dict() if tracker.begun else None
    return train(cfg, run_dir, overrides, tracker, on_ready=functools.partial(write_files, record))


def train(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (), tracker: Optional[Tracker] = None,
          on_ready: Optional[Callable[[], None]] = None) -> dict[str, float]:
    """Train a GAN as `cfg` (the composed train config) says; write everything into `run_dir`.

    `tracker` (ganrun.sweeps.record) follows the run for its result.json. `on_ready` is called once
    every check passed (config, data, sizes, checkpoint), before the first file is written.
    Under a launcher's ranks (RANK/WORLD_SIZE, see ganrun.train.distributed) this process trains
    its share of the run; rank 0 alone writes. Returns the last logged scalars (and metrics, when
    evaluation is on).
    """
    resumed: Optional[dict[str, Any]] = None
    cfg.trainer.resume = ckpt.auto_resume(cfg.trainer.resume, run_dir)  # every rank, before they meet
    if cfg.trainer.resume:
        cfg, resumed, overrides = resume_config(cfg, overrides)
    c: TrainAppConfig = to_typed(cfg, TrainAppConfig)  # fail on a bad value before touching anything
    run_dir = Path(run_dir)
    check_run_dir_free(run_dir, resumed)
    ranks = distributed.ranks_from_env()
    if ranks is None or ranks.world_size == 1:
        return _train(cfg, c, run_dir, overrides, resumed, tracker, on_ready, pick_device(c.device.name),
                      distributed.Dist())
    with distributed.joined(ranks, c.device.name, c.trainer.devices, c.trainer.batch_size,
                            c.trainer.collective_timeout_s) as (dist, device):
        return _train(cfg, c, run_dir, overrides, resumed, tracker if dist.is_main else None,
                      on_ready if dist.is_main else None, device, dist)


def _train(cfg: DictConfig, c: TrainAppConfig, run_dir: Path, overrides: Sequence[str],
           resumed: Optional[dict[str, Any]], tracker: Optional[Tracker], on_ready: Optional[Callable[[], None]],
           device, dist: distributed.Dist) -> dict[str, float]:
    set_cpu_threads(device, c.device.cpu_threads)
    built = build_run(c, device, dist=dist)
    model_id = ckpt.model_identity(c.model, built.spec)
    start_step, start_nimg = restore(built, resumed, cfg, model_id, device) if resumed else (0, 0)
    if on_ready is not None:
        on_ready()
    main = dist.is_main  # rank 0 alone prints, logs, renders, evaluates and writes
    stale = clean_stale_writes(run_dir) if main else 0  # the run dir is this run's (locked): a killed writer's temp files go

    run_dir.mkdir(parents=True, exist_ok=True)
    console = Console(c.logger.progress if main else "none", built.steps, start_step,
                      log_file=run_dir / "train.log" if main else None)
    tb = TensorBoard(run_dir, enabled=c.logger.tensorboard and main, purge_step=start_step + 1 if start_step else None)
    notes = [f"removed {stale} temp file(s) left by interrupted checkpoint writes"] if stale else []
    if resumed is not None and resumed.get("skipped"):
        notes.append(f"resuming from {Path(resumed['path']).name}; passed over: {'; '.join(resumed['skipped'])}")
    # several ranks: host work (grids, evaluation) on rank 0 finishes before a signal stops it, so that
    # every rank stops after the same step (they agree on the stop flag at each step boundary)
    stop_on_signal = StopOnSignal(interrupt_host_work=not dist.active)
    jobs = _jobs(c, cfg, built, run_dir, console, tb, overrides, model_id, start_step, notes, stop_on_signal) if main \
        else distributed.OtherRankJobs(stop_on_signal)
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
            everyone = distributed.StopEverywhere(stop, dist)  # a signal on any rank stops all
            result = train_loop(step_fn, built.source.next, distributed.RankMeanStats(Stats(), dist), schedule, jobs,
                                start_step=start_step, start_nimg=start_nimg, images_per_batch=t.batch_size,
                                progress=console.advance, should_stop=everyone)
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
    if stop.signum is None and everyone.signum:  # another rank was signalled
        stop.signum = everyone.signum
    if stop.signum is not None:
        message = (f"stopped by {stop.name} after step {int(result['step']):,}; checkpoint "
                   f"{jobs.last_saved or run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST}; "
                   f"resume with: {command(['ganrun', 'train', override('trainer.resume', run_dir)])}")
        console.record(message)
        stop.pass_on()  # e.g. submitit's requeue on SIGUSR2, now that the checkpoint is written
        raise Interrupted(message, stop.signum)
    console.message(f"done: {int(result['step']):,} steps; checkpoint {run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST}")
    return result


def _jobs(c: TrainAppConfig, cfg: DictConfig, built: BuiltRun, run_dir: Path, console: Console, tb: TensorBoard,
          overrides: Sequence[str], model_id: dict[str, Any], start_step: int, notes: list[str],
          stop: StopOnSignal) -> RunJobs:
    """Show the run's header (config, notes, sizes, reals) and build its periodic jobs."""
    spec, device, dist = built.spec, built.device, built.dist
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if c.logger.print_config and c.logger.progress != "none":
        print_config_tree(resolved)
    for note in [*built.dataset.notes, *notes]:
        console.message(f"warning: {note}", style="warning")
    where = (f"{dist.world_size} × {device.type} ({distributed.backend(device)}), batch {c.trainer.batch_size} = "
             f"{dist.world_size} × {dist.local(c.trainer.batch_size)} per rank" if dist.active else str(device))
    console.message(
        f"{c.model.name}: G {count_parameters(built.G):,} params, D {count_parameters(built.D):,} params | "
        f"{spec.name} {spec.size:,} × {tuple(spec.shape)} on {where} | {built.steps:,} steps"
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
                   stop=stop, health=Health(conditional=built.fixed_c is not None))
