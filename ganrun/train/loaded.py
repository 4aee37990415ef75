"""Rebuild a trained run from its checkpoint: the record of config and data spec it carries."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from ganrun.config.schema import DatasetConfig, ModelConfig
from ganrun.data import DataSpec
from ganrun.errors import UserError
from ganrun.models import MODELS, build_models
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


# The keys of the one flat model schema of earlier ganruns, which every family's checkpoint carried; a
# family that does not declare one of them never read it, so it is dropped when rebuilding.
FLAT_MODEL_KEYS = ("ngf", "ndf", "image_size", "norm", "minibatch_std", "dropout")


def model_config(values: Optional[dict]) -> ModelConfig:
    """The checkpoint's model section as its family's own dataclass (MLPConfig, DCGANConfig, ...)."""
    if values is None or "name" not in values:
        return _typed(ModelConfig, values, "model")  # says what is missing
    if values["name"] not in MODELS:
        raise UserError(f"the checkpoint is for model={values['name']}, which this ganrun does not have "
                        f"(its families: {', '.join(MODELS.names())})")
    schema = MODELS.get(values["name"]).schema
    own = {f.name for f in fields(schema)}
    return _typed(schema, {k: v for k, v in values.items() if k in own or k not in FLAT_MODEL_KEYS}, "model")


def load_run(checkpoint: str | Path, device: torch.device) -> LoadedRun:
    """Load a checkpoint (file or run dir) and rebuild its generator (EMA when present)."""
    state = ckpt.load_checkpoint(checkpoint)
    if "spec" not in state:
        raise UserError(f"{state['path']} lacks the data spec; it was written by an older ganrun")
    config = state["config"]
    model_cfg = model_config(config.get("model"))
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
