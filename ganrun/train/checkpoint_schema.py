"""The one schema of a checkpoint's contents: types, shapes and ranges, checked before any use.

`torch.load(weights_only=True)` guarantees only that a file holds tensors and plain containers.
A file with the right keys can still hold a list where a state dict belongs, a string model id,
a non-integer step, a 3-byte RNG state, broken optimizer groups or NaN weights; used as is, each
would end in a traceback somewhere in train, sample or eval. `check(state)` walks the whole dict
against SCHEMA and returns the first problem as (dotted field, what was expected, what was
found); `ganrun.train.checkpoint.load_checkpoint` turns it into one line naming the file and the
field. Keys outside SCHEMA are refused too, so a field cannot slip in unchecked.

Each checker takes a value and returns None when it fits, or a problem (field suffix, expected,
found). Only which keys a use needs (resume, eval, sample) is decided elsewhere.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

Problem = tuple[str, str, str]  # (field suffix, expected, found)
Check = Callable[[Any], Optional[Problem]]
FLOAT32_MAX = 3.4028234663852886e38  # hyperparameters and metrics scale float32 tensors
RNG_BYTES = torch.get_rng_state().numel()  # CPU generator state (mt19937): torch and the data order


def found(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


def integer(lo: Optional[int] = 0, hi: Optional[int] = None) -> Check:
    def check(v):
        if type(v) is not int or (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = f" >= {lo}" if hi is None else f" in [{lo}, {hi}]"
            return "", f"an integer{bounds if lo is not None else ''}", found(v)
        return None
    return check


def number(lo: Optional[float] = None) -> Check:
    def check(v):
        if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > (2**63 - 1 if type(v) is int else FLOAT32_MAX) \
                or (lo is not None and v < lo):
            return "", "a finite float32 number" + (f" >= {lo}" if lo is not None else ""), found(v)
        return None
    return check


def text(choices: Optional[tuple[str, ...]] = None) -> Check:
    def check(v):
        if not isinstance(v, str) or (choices and v not in choices):
            return "", "a string" + (f" (one of {', '.join(choices)})" if choices else ""), found(v)
        return None
    return check


def boolean(v):
    return None if isinstance(v, bool) else ("", "true or false", found(v))


def optional(inner: Check) -> Check:
    return lambda v: None if v is None else inner(v)


def tensor(dtypes: Optional[tuple[torch.dtype, ...]] = None, ndim: Optional[int] = None,
           numel: Optional[int] = None, finite: bool = True) -> Check:
    def check(v):
        want = "a tensor" + (f" of {'/'.join(str(d).removeprefix('torch.') for d in dtypes)}" if dtypes else "") + (
            f" with {ndim} dims" if ndim is not None else "") + (f" of {numel} elements" if numel is not None else "")
        if not isinstance(v, torch.Tensor) or v.is_sparse or (dtypes and v.dtype not in dtypes) or (
                ndim is not None and v.dim() != ndim) or (numel is not None and v.numel() != numel):
            return "", want, found(v)
        if finite and (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            return "", "finite values", "NaN/Inf in it"
        return None
    return check


def listof(item: Check, length: Optional[int] = None, nonempty: bool = False) -> Check:
    def check(v):
        if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length) or (nonempty and not v):
            return "", ("a non-empty list" if nonempty else "a list") + (f" of {length}" if length else ""), found(v)
        for i, x in enumerate(v):
            if (p := item(x)) is not None:
                return f"[{i}]{p[0]}", p[1], p[2]
        return None
    return check


def record(fields: dict[str, Check], required: tuple[str, ...] = (), extra: Optional[Check] = None) -> Check:
    """A dict with str keys: the listed fields checked, `required` ones present, others checked by `extra`
    (None: not allowed)."""
    def check(v):
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            return "", "a dict with string keys", found(v)
        for key in required:
            if key not in v:
                return f".{key}", "present", "missing"
        for key, x in v.items():
            inner = fields.get(key, extra)
            if inner is None:
                return f".{key}", "no such field", "an unknown field"
            if (p := inner(x)) is not None:
                return f".{key}{p[0]}", p[1], p[2]
        return None
    return check


def state_dict(v):
    """A module's state dict: parameter names → tensors; never empty."""
    if not isinstance(v, dict) or not v:
        return "", "a non-empty state dict (name -> tensor)", found(v)
    return record({}, extra=tensor())(v)


def any_plain(v):
    """Config values: plain YAML-like data."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return None
    if isinstance(v, (list, tuple)):
        return listof(any_plain)(v)
    if isinstance(v, dict):
        return record({}, extra=any_plain)(v)
    return "", "plain config data", found(v)


def hyper(v):
    """An optimizer hyperparameter: a finite number, a flag, None, a name, or a tuple of numbers (betas)."""
    if v is None or isinstance(v, (bool, str)):
        return None
    if isinstance(v, (list, tuple)):
        return listof(number())(v)
    return number()(v)


def optimizer(v):
    """torch's Optimizer.state_dict(): per-parameter state keyed by index, and the param groups."""
    group = record({"params": listof(integer(0), nonempty=True), "lr": number(0.0)}, required=("params", "lr"),
                   extra=hyper)
    p = record({"state": lambda s: None, "param_groups": listof(group, nonempty=True)},
               required=("state", "param_groups"))(v)
    if p is not None:
        return p
    indices = [i for g in v["param_groups"] for i in g["params"]]
    if len(set(indices)) != len(indices):
        return ".param_groups", "each parameter in one group once", "a parameter listed twice"
    if not isinstance(v["state"], dict):
        return ".state", "a dict (parameter index -> state)", found(v["state"])
    for key, entry in v["state"].items():
        if type(key) is not int or key not in indices:
            return ".state", "keys that are parameter indices of the groups", f"key {key!r}"
        if (p := record({}, extra=tensor())(entry)) is not None:
            return f".state[{key}]{p[0]}", p[1], p[2]
    return None


def generator_state(v):
    return tensor((torch.uint8,), ndim=1, numel=RNG_BYTES)(v)


SPEC = record({
    "name": text(), "kind": text(("image", "points")), "shape": listof(integer(1), nonempty=True),
    "num_classes": integer(0), "size": integer(0), "class_names": listof(text()),
    "centers": listof(listof(number(), length=2)), "mode_std": number(0.0),
}, required=("name", "kind", "shape", "num_classes", "size", "class_names", "centers", "mode_std"))

MODEL_ID = record({"model": text(), "shape": listof(integer(1), nonempty=True), "num_classes": integer(0),
                   "conditional": boolean}, required=("model", "shape", "num_classes", "conditional"))

SCHEMA = record({
    "format_version": integer(1),  # the upper bound is checked first, with its own message (upgrade ganrun)
    "step": integer(0, 2**63 - 1),
    "nimg": integer(0, 2**63 - 1),
    "G": state_dict,
    "D": state_dict,
    "G_ema": optional(state_dict),
    "opt_G": optimizer,
    "opt_D": optimizer,
    "rng": record({"torch": generator_state, "cuda": listof(tensor((torch.uint8,), ndim=1)),
                   "data": record({"epoch": integer(0, 2**63 - 1), "position": integer(0, 2**63 - 1),
                                   "generator": generator_state},
                                  required=("epoch", "position", "generator"))},
                  required=("torch", "cuda", "data")),
    "fixed_z": tensor((torch.float32, torch.float64, torch.float16, torch.bfloat16), ndim=2),
    "fixed_c": optional(tensor((torch.int64,), ndim=1)),
    "best_metric": optional(number()),
    "best": record({"metric": text(), "value": number()}, required=("metric", "value")),
    "config": record({}, extra=any_plain),
    "overrides": listof(text()),
    "model_id": MODEL_ID,
    "spec": SPEC,
    "result": optional(record({}, extra=any_plain)),  # the run's result.json tracker (ganrun.sweeps.record)
})


def _across(state: dict) -> Optional[Problem]:
    """Rules that span fields: the fixed grid inputs against the model, the spec against the model id."""
    z, c = state.get("fixed_z"), state.get("fixed_c")
    model = state.get("config", {}).get("model")
    latent = model.get("latent_dim") if isinstance(model, dict) else None
    if z is not None and type(latent) is int and z.shape[1] != latent:
        return "fixed_z", f"shape [n, {latent}] (config.model.latent_dim)", found(z)
    if c is not None and z is not None:
        if len(c) != len(z):
            return "fixed_c", f"{len(z)} labels (one per fixed_z row)", found(c)
        classes = state["model_id"]["num_classes"]
        if len(c) and (int(c.min()) < 0 or int(c.max()) >= max(classes, 1)):
            return "fixed_c", f"labels in [0, {classes})", f"labels in [{int(c.min())}, {int(c.max())}]"
    spec = state.get("spec")
    if spec is not None:
        for key in ("shape", "num_classes"):
            mine, theirs = spec[key], state["model_id"][key]
            if (list(mine) if key == "shape" else mine) != (list(theirs) if key == "shape" else theirs):
                return f"spec.{key}", f"{theirs!r} (as model_id.{key})", repr(mine)
    return None


def check(state: dict) -> Optional[Problem]:
    """The first problem of a loaded checkpoint dict, as (field, expected, found); None when it fits."""
    p = SCHEMA(state)
    if p is not None:
        return p[0].lstrip("."), p[1], p[2]
    return _across(state)
