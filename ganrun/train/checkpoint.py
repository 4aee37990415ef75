"""One checkpoint format: a dict of plain state, written atomically, read without unpickling code.

Contents: format version, step and image counters, state dicts of G, D, G_ema and both
optimizers, RNG states (torch CPU/CUDA and the data order), the fixed sample-grid inputs, the
model's identity (family, data shape, classes) and the resolved config as a plain dict together
with the command-line overrides that produced it (so a resume recomposes the same run).

Reading is defensive: the zip members' CRC-32s are checked (torch.load does not), so a truncated
or bit-flipped file is refused instead of loading garbage weights; `weights_only=True` refuses
any pickled code; the format version, the model identity and the state-dict shapes are checked,
each failure a one-line UserError naming the file.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from ganrun.atomic import atomic_write
from ganrun.errors import UserError
from ganrun.train import checkpoint_schema

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
STEP_GLOB = "step_*.pt"  # step-numbered checkpoints, step_<7 digits>.pt; trainer.keep_last of them are kept
REQUIRED_KEYS = ("format_version", "step", "G", "D", "config", "model_id")
ZIP_MAGIC = b"PK\x03\x04"
RESUME_KEYS = ("nimg", "G_ema", "opt_G", "opt_D", "rng", "fixed_z", "fixed_c", "overrides")


def step_of(path: Path) -> int:
    """The step of a step_<n>.pt file (-1 for a name that is not one), for sorting them."""
    try:
        return int(Path(path).stem.split("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def _os_error(exc: Optional[BaseException]) -> Optional[OSError]:
    """The OSError behind `exc`: torch.save reports a failed write as a RuntimeError whose context is it."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: temp file in the same dir, flush, fsync, rename.

    A crash at any point leaves the previous file at `path` intact, and no temp file is left
    behind by a failed write. A full disk or an unwritable folder raises UserError naming the path.
    """
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save({"format_version": FORMAT_VERSION, **state}, f))
    except Exception as exc:  # noqa: BLE001 - only filesystem errors become user errors
        os_error = _os_error(exc)
        if os_error is None:
            raise
        reason = os_error.strerror or str(os_error)
        raise UserError(f"cannot write checkpoint {path}: {reason}; free disk space or choose a writable "
                        "hydra.run.dir (the previous checkpoint, if any, is intact)") from None


def candidates(run_dir: Path) -> list[Path]:
    """A run dir's checkpoints, newest first as far as names tell: last.pt, step_*.pt by step, best.pt."""
    folder = run_dir / CHECKPOINT_DIR
    steps = sorted(folder.glob(STEP_GLOB), key=step_of, reverse=True) if folder.is_dir() else []
    found = [folder / LAST, *steps, folder / BEST, run_dir / LAST]
    return [p for p in found if p.is_file()]


def resolve_checkpoint(path_or_dir: str | Path) -> Path:
    """A checkpoint file, or a run dir (→ its newest-named checkpoint; `load_checkpoint` verifies)."""
    p = Path(path_or_dir).expanduser()
    if p.is_dir():
        found = candidates(p)
        if found:
            return found[0]
        raise UserError(f"no checkpoint in {p} (looked for {CHECKPOINT_DIR}/{LAST}, {CHECKPOINT_DIR}/step_*.pt and "
                        f"{CHECKPOINT_DIR}/{BEST})")
    if not p.exists():
        raise UserError(f"checkpoint {p} does not exist")
    return p


def load_newest(run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The newest checkpoint of a run dir that verifies: last.pt, or a step_*.pt past it, or best.pt.

    A run killed (or out of disk) between writing step_N.pt and last.pt, or in the middle of either,
    leaves last.pt older than step_N.pt, or damaged: this picks what a resume can continue from.
    The ones passed over are listed in the returned state's "skipped" (for a warning).
    """
    skipped: list[str] = []
    best: Optional[dict[str, Any]] = None
    for path in candidates(run_dir):
        if best is not None and (path.name == BEST or step_of(path) <= best["step"]):
            break  # nothing further down the list can be newer
        try:
            state = load_checkpoint(path, map_location)
        except UserError as exc:
            skipped.append(f"{path.name} ({str(exc).split(': ', 1)[-1][:120]})")
            continue
        if best is None or state["step"] > best["step"]:
            best = state  # after last.pt, a step file written later (killed before last.pt) may be newer
    if best is None:
        if not skipped:
            resolve_checkpoint(run_dir)  # raises "no checkpoint in ..."
        raise UserError(f"no checkpoint in {run_dir} verifies: {'; '.join(skipped)}")
    best["skipped"] = skipped
    return best


def _check_archive(path: Path) -> None:
    """A torch.save file is a zip archive with a CRC-32 per member; torch.load does not check them."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load checkpoint {path}: the file is truncated, corrupt or not written by "
                        f"torch.save ({exc}); use another checkpoint (e.g. a step_*.pt next to it)") from None
    if bad is not None:
        raise UserError(f"cannot load checkpoint {path}: the file is corrupt (checksum mismatch in {bad}); "
                        "use another checkpoint (e.g. a step_*.pt next to it)")


def _load_failure(exc: Exception, empty: bool) -> str:
    """Why torch.load(weights_only=True) failed, in words; the restricted unpickler names what it refused."""
    text = str(exc)
    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
    if found:
        return (f"it contains pickled Python objects ({found[1]}) that ganrun refuses to load (only tensors and "
                "plain containers are allowed; nothing in it was executed)")
    if empty:
        return "the file is empty"
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    first = detail[1] if detail else (text.strip().splitlines() or [type(exc).__name__])[0]
    return f"the file is truncated, corrupt or not written by torch.save ({first.strip()[:120]})"


def load_checkpoint(path_or_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` and check it is one of ours, of a version we read.

    Every problem is a UserError naming the file: missing, truncated, corrupt (zip CRC), carrying
    pickled code (refused by the restricted unpickler, never executed), not a ganrun checkpoint,
    or written by a newer format.
    """
    if Path(path_or_dir).expanduser().is_dir():
        return load_newest(Path(path_or_dir).expanduser(), map_location)
    path = resolve_checkpoint(path_or_dir)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == ZIP_MAGIC:  # torch.save's format: a zip archive
        if not zipfile.is_zipfile(path):
            raise UserError(f"cannot load checkpoint {path}: the file is truncated, corrupt or not written by "
                            "torch.save (its zip directory is missing; was the write cut short?)")
        _check_archive(path)
    try:
        with warnings.catch_warnings():  # e.g. torch's pickle-protocol notice: the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickled code, foreign format
        raise UserError(f"cannot load checkpoint {path}: {_load_failure(exc, empty=not head)}") from None
    if head != ZIP_MAGIC:  # loaded by the restricted unpickler (nothing ran), but no checksum covers it
        raise UserError(f"cannot load checkpoint {path}: it is in torch's legacy (non-zip) format, which carries no "
                        "checksums, so damage in it would go unseen; ganrun reads only the zip format `ganrun train` "
                        "writes (re-save it with torch.save)")
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise UserError(f"{path} is not a ganrun checkpoint (missing keys); pass a file written by `ganrun train`")
    version = state["format_version"]
    if type(version) is int and version > FORMAT_VERSION:
        raise UserError(
            f"{path} has checkpoint format {version}, newer than this ganrun reads ({FORMAT_VERSION}); upgrade ganrun"
        )
    problem = checkpoint_schema.check(state)
    if problem is not None:
        where, expected, got = problem
        raise UserError(f"checkpoint {path} is damaged or not written by ganrun: field '{where}' must be {expected}, "
                        f"found {got}; use another checkpoint (e.g. a step_*.pt next to it)")
    state["path"] = str(path)
    return state


def check_resumable(state: dict[str, Any]) -> None:
    """A checkpoint to resume from needs the optimizer, RNG and data-order state too."""
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise UserError(f"checkpoint {state.get('path')} cannot be resumed: it lacks {', '.join(missing)} "
                        "(it holds weights only; use it with `ganrun eval`, or resume from a last.pt)")


def load_state(module: Any, state: dict[str, Any], what: str, path: Any) -> None:
    """`module.load_state_dict(state)`, with a mismatch reported as one line naming the file."""
    try:
        module.load_state_dict(state)
        if isinstance(module, torch.optim.Optimizer):
            _check_optimizer_shapes(module)
    except (RuntimeError, ValueError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = "; ".join(lines[1:3] or lines[:1])
        raise UserError(f"checkpoint {path} does not fit the configured {what} ({detail[:300]}); was it "
                        "written with other model options (model.latent_dim, model.minibatch_std, ...)?") from None


REQUIRED_STATE = {"Adam": {"step", "exp_avg", "exp_avg_sq"}, "AdamW": {"step", "exp_avg", "exp_avg_sq"},
                  "RMSprop": {"step", "square_avg"}}  # per-parameter state each optimizer's step reads


def _check_optimizer_shapes(opt: torch.optim.Optimizer) -> None:
    """Optimizer.load_state_dict checks the group sizes but not the state: every parameter's entry must
    have the same keys (those the optimizer's step reads), and each tensor be a scalar (a step count)
    or have its parameter's shape (a moment)."""
    needed = REQUIRED_STATE.get(type(opt).__name__, set())
    keys = {frozenset(st) for st in opt.state.values()}
    if len(keys) > 1 or any(not needed <= k for k in keys):
        raise ValueError(f"optimizer state entries differ or lack {', '.join(sorted(needed))}: "
                         f"{sorted(sorted(k) for k in keys)[:3]}")
    for group in opt.param_groups:
        for p in group["params"]:
            for name, value in opt.state.get(p, {}).items():
                if not isinstance(value, torch.Tensor):
                    continue
                if name == "step" and (value.numel() != 1 or not value.is_floating_point()):
                    raise ValueError(f"optimizer state 'step' must be a one-element float tensor, got "
                                     f"{list(value.shape)} {value.dtype}")
                if name != "step" and (value.shape != p.shape or not value.is_floating_point()):
                    raise ValueError(f"optimizer state '{name}' has shape {list(value.shape)} for a parameter of "
                                     f"shape {list(p.shape)}")


def model_identity(model_cfg, spec) -> dict[str, Any]:
    """What must match for a checkpoint's weights to fit a model: family, data shape, classes."""
    return {"model": model_cfg.name, "shape": list(spec.shape), "num_classes": int(spec.num_classes),
            "conditional": bool(model_cfg.conditional)}


def check_identity(state: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse a checkpoint written for another model family, data shape or label set, saying which."""
    found = state["model_id"]
    if found != expected:
        diffs = [f"{k}: checkpoint {found.get(k)!r} vs config {expected.get(k)!r}"
                 for k in expected if found.get(k) != expected.get(k)]
        raise UserError(f"checkpoint {state.get('path')} is for another model ({'; '.join(diffs)})")


AUTO_RESUME = "auto"  # trainer.resume=auto: continue the run in its own dir when it holds last.pt


def auto_resume(resume: Optional[str], run_dir: str | Path) -> Optional[str]:
    """What `trainer.resume` means for the run in `run_dir`.

    `auto`: the run dir's own checkpoints/last.pt when it exists (a rerun of a killed or
    preempted job continues where it stopped), else None (a fresh start). Any other value (a
    checkpoint file, a run dir, None) is returned as it is.
    """
    if resume != AUTO_RESUME:
        return resume
    last = Path(run_dir) / CHECKPOINT_DIR / LAST
    return str(last) if last.is_file() else None
