"""Resuming a run: recompose its config from the checkpoint's record, then restore its state."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun.config.compose import compose
from ganrun.errors import UserError, user_error_message
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
        # quoted: sweep job dirs have `=` and `,` in their names, which the override grammar reads
        quoted = "'" + str(state["path"]).replace("\\", "\\\\").replace("'", "\\'") + "'"
        composed = compose("train", [*merged, f"trainer.resume={quoted}"])
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


def check_run_dir_free(run_dir: Path, resumed: Optional[dict[str, Any]]) -> None:
    """Refuse a run dir that holds another run's last.pt (resuming that very checkpoint is fine)."""
    last = run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST
    if last.exists() and (resumed is None or Path(resumed["path"]).resolve() != last.resolve()):
        raise UserError(f"{run_dir} already holds a run ({last}); resume it with trainer.resume={run_dir} "
                        "or choose another hydra.run.dir")


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
    reconfigured = OmegaConf.to_container(cfg.optimizer, resolve=True) != resumed["config"].get("optimizer")
    restore_optimizer(run.opt_G, resumed["opt_G"], path, "generator optimizer", reconfigured)
    restore_optimizer(run.opt_D, resumed["opt_D"], path, "discriminator optimizer", reconfigured)
    run.source.load_state_dict(resumed["rng"]["data"])
    torch.set_rng_state(resumed["rng"]["torch"])
    if device.type == "cuda" and resumed["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(resumed["rng"]["cuda"])
    run.fixed_z = resumed["fixed_z"].to(device)
    run.fixed_c = None if resumed["fixed_c"] is None else resumed["fixed_c"].to(device)
    return int(resumed["step"]), int(resumed["nimg"])
