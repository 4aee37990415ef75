"""`ganrun export`: the trained generator as an ONNX, TorchScript or state-dict file, checked for parity.

The generator (EMA when the run kept one) is exported in eval mode on the CPU, with a dynamic
batch axis and the label input of conditional models; the file's metadata says what goes in and
what comes out (layout, range, classes) and where it came from. The file is written under a
temp name, read back by the runtime of its format and compared with eager G at batch sizes 1, 7
and 64; only a file within `tolerance` is moved into place, so a failed export leaves nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import ganrun
from ganrun.train.loaded import LoadedRun, load_run
from ganrun.config.schema import ExportAppConfig
from ganrun.errors import UserError
from ganrun.models.export import FORMATS, parity

PARITY_BATCH_SIZES = (1, 7, 64)


def metadata(run: LoadedRun) -> dict[str, str]:
    """What a user of the file needs to feed it and read its output, as string key/values."""
    G, spec = run.G, run.spec
    inputs = f"z: float32 (N, {G.latent_dim}) ~ N(0, I)"
    if G.num_classes:
        inputs += f"; c: int64 (N,) class index in [0, {G.num_classes})"
    shape = ", ".join(str(d) for d in spec.shape)
    meta = {
        "ganrun.version": ganrun.__version__,
        "ganrun.inputs": inputs,
        "ganrun.output": f"x: float32 (N, {shape})",
        "ganrun.layout": "NCHW" if spec.is_image else "NC (2-D points)",
        "ganrun.output_range": "[-1, 1]" if spec.is_image else "unbounded (data coordinates)",
        "ganrun.latent_dim": str(G.latent_dim),
        "ganrun.num_classes": str(G.num_classes),
        "ganrun.class_names": json.dumps(list(spec.class_names) if G.num_classes else []),
        "ganrun.model": run.model_cfg.name,
        "ganrun.dataset": spec.name,
        "ganrun.generator": "G_ema" if run.state.get("G_ema") else "G",
        "ganrun.step": str(run.step),
        "ganrun.checkpoint": str(run.checkpoint_path),
    }
    if spec.is_image:
        meta["ganrun.to_pixels"] = "uint8 = clamp(round((x + 1) * 127.5), 0, 255)"
    return meta


def output_path(c: ExportAppConfig, run: LoadedRun) -> Path:
    if c.out:
        return Path(c.out).expanduser()
    return run.run_dir / "export" / f"generator_{run.step:07d}{FORMATS.get(c.format).suffix}"


def export(cfg: DictConfig) -> Path:
    c: ExportAppConfig = OmegaConf.to_object(cfg)
    fmt = FORMATS.get(c.format)
    if not c.tolerance > 0:
        raise UserError(f"tolerance must be > 0, got {c.tolerance}")
    run = load_run(c.checkpoint, torch.device("cpu"))
    out = output_path(c, run)
    if out.exists() and not c.overwrite:
        raise UserError(f"{out} already exists; pass overwrite=true to replace it, or out=<another file>")
    if out.is_dir():
        raise UserError(f"out={out} is a directory; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp{fmt.suffix}")
    G = run.G.eval()
    record: dict[str, Any] = {"model": run.state["config"]["model"], "spec": run.state["spec"]}
    try:
        fmt.write(G, tmp, metadata(run), record)
        diffs = parity(G, fmt.load(tmp), PARITY_BATCH_SIZES)
        worst = max(diffs.values())
        if not worst <= c.tolerance:
            shown = ", ".join(f"{d:.2g} at batch {n}" for n, d in diffs.items())
            raise UserError(f"format={c.format}: the exported generator differs from the eager one "
                            f"(max abs difference {shown}; tolerance {c.tolerance:g}); nothing written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out} ({c.format}, {run.model_cfg.name} {metadata(run)['ganrun.generator']} from step "
          f"{run.step:,} of {run.checkpoint_path}; parity max abs difference {worst:.1e} at batch sizes "
          f"{', '.join(map(str, PARITY_BATCH_SIZES))})")
    return out


def run(cfg: DictConfig) -> Path:
    return export(cfg)
