"""Rebuild a trained run from its checkpoint: the record of config and data spec it carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from ganrun.config.schema import DatasetConfig, ModelConfig
from ganrun.data import DataSpec
from ganrun.errors import UserError
from ganrun.models import build_models
from ganrun.train import checkpoint as ckpt


@dataclass
class LoadedRun:
    state: dict[str, Any]  # the checkpoint
    G: torch.nn.Module  # the EMA generator when the run kept one, in eval mode
    spec: DataSpec
    dataset_cfg: DatasetConfig
    model_cfg: ModelConfig
    checkpoint_path: Path

    @property
    def run_dir(self) -> Path:
        """The run dir: <run>/checkpoints/x.pt → <run>."""
        p = self.checkpoint_path.parent
        return p.parent if p.name == ckpt.CHECKPOINT_DIR else p

    @property
    def step(self) -> int:
        return int(self.state["step"])


def _typed(schema: type, values: Optional[dict], what: str):
    if values is None:
        raise UserError(f"the checkpoint's config has no '{what}' section; it was not written by `ganrun train`")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except Exception as exc:  # noqa: BLE001 - unknown keys from a newer ganrun, wrong types
        raise UserError(f"the checkpoint's {what} config does not fit this ganrun: {str(exc).splitlines()[0]}") from None


def load_run(checkpoint: str | Path, device: torch.device) -> LoadedRun:
    """Load a checkpoint (file or run dir) and rebuild its generator (EMA when present)."""
    state = ckpt.load_checkpoint(checkpoint)
    if "spec" not in state:
        raise UserError(f"{state['path']} lacks the data spec; it was written by an older ganrun")
    config = state["config"]
    model_cfg = _typed(ModelConfig, config.get("model"), "model")
    dataset_cfg = _typed(DatasetConfig, config.get("dataset"), "dataset")
    spec = DataSpec.from_dict(state["spec"])
    G, _ = build_models(model_cfg, spec)
    weights = state.get("G_ema") or state["G"]
    try:
        G.load_state_dict(weights)
    except RuntimeError as exc:
        raise UserError(f"{state['path']}: generator weights do not fit model={model_cfg.name}: "
                        f"{str(exc).splitlines()[0]}") from None
    G.to(device).eval().requires_grad_(False)
    return LoadedRun(state, G, spec, dataset_cfg, model_cfg, Path(state["path"]))
