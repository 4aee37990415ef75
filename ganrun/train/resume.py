"""Resuming a run: recompose its config from the checkpoint's record, then restore its state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.atomic import stale_temp_files
from ganrun.config.compose import compose
from ganrun.errors import UserError, user_error_message
from ganrun.shell import command, override
from ganrun.train import checkpoint as ckpt


def resume_config(cfg: DictConfig, overrides: Sequence[str]) -> tuple[DictConfig, dict[str, Any], list[str]]:
    """Recompose the run being resumed: its own overrides, then today's (which win).

    Returns the config, the checkpoint, and the merged overrides (without trainer.resume), which
    the new checkpoints record so that a later resume recomposes the same run again.
    """
    state = ckpt.load_checkpoint(cfg.trainer.resume)
    ckpt.check_resumable(state)
    keep = [o for o in overrides if not o.lstrip("+~").startswith("trainer.resume=")]
    merged = [*state.get("overrides", []), *keep]
    try:
        composed = compose("train", [*merged, override("trainer.resume", state["path"])])
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
    `trainer.resume=<run> optimizer.lr=1e-5` must really train on with 1e-5 (and a new
    `loss.r1_every` with its own lazy-phase rescale). An unchanged config
    keeps the saved param groups as they are (and any scheduler-adjusted lr in them).
    """
    configured = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    ckpt.load_state(opt, state, what, path)
    if reconfigured:
        for group, values in zip(opt.param_groups, configured):
            group.update(values)


def check_run_dir_free(run_dir: Path, resumed: Optional[dict[str, Any]]) -> None:
    """Refuse a run dir that holds another run's last.pt (resuming one of its own checkpoints is fine)."""
    last = run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST
    if last.exists() and (resumed is None or Path(resumed["path"]).resolve().parent != last.parent.resolve()):
        raise UserError(f"{run_dir} already holds a run ({last}); resume it with "
                        f"{command([override('trainer.resume', run_dir)])} or choose another hydra.run.dir")


def clean_stale_writes(run_dir: Path) -> int:
    """Remove the temp files of checkpoint writes that a killed process of this run left; how many."""
    stale = list(stale_temp_files(run_dir / ckpt.CHECKPOINT_DIR))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def restore(run, resumed: dict[str, Any], cfg: DictConfig, model_id: dict[str, Any], device: torch.device
            ) -> tuple[int, int]:
    """Load a checkpoint's state into a built run (`build.BuiltRun`); returns (step, nimg) to go on from.

    Weights, optimizer moments, the data order, the RNG states and the fixed grid inputs all come
    back, so the resumed run continues the same sequence it would have without the stop.
    """
    ckpt.check_identity(resumed, model_id)
    path = resumed["path"]
    ckpt.load_state(run.G, resumed["G"], "generator", path)
    ckpt.load_state(run.D, resumed["D"], "discriminator", path)
    if run.G_ema is not None and resumed.get("G_ema") is not None:
        ckpt.load_state(run.G_ema, resumed["G_ema"], "generator EMA", path)
    # the optimizer's hyperparameters follow its config and the loss's (a lazy phase rescales D's)
    reconfigured = any(OmegaConf.to_container(cfg[group], resolve=True) != resumed["config"].get(group)
                       for group in ("optimizer", "loss"))
    restore_optimizer(run.opt_G, resumed["opt_G"], path, "generator optimizer", reconfigured)
    restore_optimizer(run.opt_D, resumed["opt_D"], path, "discriminator optimizer", reconfigured)
    run.source.load_state_dict(resumed["rng"]["data"])
    torch.set_rng_state(resumed["rng"]["torch"])
    if device.type == "cuda" and resumed["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(resumed["rng"]["cuda"])
    run.fixed_z = resumed["fixed_z"].to(device)
    run.fixed_c = None if resumed["fixed_c"] is None else resumed["fixed_c"].to(device)
    return int(resumed["step"]), int(resumed["nimg"])
