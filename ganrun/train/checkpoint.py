"""One checkpoint format: a dict of plain state, written atomically, read without unpickling code.

Contents: format version, step and image counters, state dicts of G, D, G_ema and both
optimizers, RNG states (torch CPU/CUDA and the data order), the fixed sample-grid inputs, the
model's identity (family, data shape, classes) and the resolved config as a plain dict together
with the command-line overrides that produced it (so a resume recomposes the same run).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ganrun.errors import UserError

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("format_version", "step", "G", "D", "config", "model_id")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: temp file in the same dir, flush, fsync, rename.

    A crash at any point leaves the previous file at `path` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def resolve_checkpoint(path_or_dir: str | Path) -> Path:
    """A checkpoint file, or a run dir (→ checkpoints/last.pt, else best.pt)."""
    p = Path(path_or_dir).expanduser()
    if p.is_dir():
        for candidate in (p / CHECKPOINT_DIR / LAST, p / CHECKPOINT_DIR / BEST, p / LAST):
            if candidate.is_file():
                return candidate
        raise UserError(f"no checkpoint in {p} (looked for {CHECKPOINT_DIR}/{LAST} and {CHECKPOINT_DIR}/{BEST})")
    if not p.exists():
        raise UserError(f"checkpoint {p} does not exist")
    return p


def load_checkpoint(path_or_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` and check it is one of ours, of a version we read."""
    path = resolve_checkpoint(path_or_dir)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickled code, foreign format
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it contains pickled Python objects that ganrun refuses to load (only plain tensors and containers are allowed)"
        raise UserError(f"cannot load checkpoint {path}: {reason[:300]}") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise UserError(f"{path} is not a ganrun checkpoint (missing keys); pass a file written by `ganrun train`")
    version = state["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {version}, newer than this ganrun reads ({FORMAT_VERSION}); upgrade ganrun"
        )
    state["path"] = str(path)
    return state


def model_identity(model_cfg, spec) -> dict[str, Any]:
    """What must match for a checkpoint's weights to fit a model: family, data shape, classes."""
    return {"model": model_cfg.name, "shape": list(spec.shape), "num_classes": int(spec.num_classes),
            "conditional": bool(model_cfg.conditional)}


def check_identity(state: dict[str, Any], expected: dict[str, Any]) -> None:
    found = state["model_id"]
    if found != expected:
        diffs = [f"{k}: checkpoint {found.get(k)!r} vs config {expected.get(k)!r}"
                 for k in expected if found.get(k) != expected.get(k)]
        raise UserError(f"checkpoint {state.get('path')} is for another model ({'; '.join(diffs)})")
