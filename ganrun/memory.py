"""Will it fit: refuse, up front, a size whose tensors cannot be held in memory.

A size in the config (`model.latent_dim`, `trainer.num_sample_images`, `sample n`, ...) that is a
valid number but far too large would end, minutes later, in an out-of-memory traceback (or an
overflow deep in torch). Each place that allocates by a configured size asks `require` first,
with the bytes it is about to need; the refusal is one line naming the key, the bytes needed, the
bytes available on that device, and the largest value that would fit.

Memory available: on CUDA, `torch.cuda.mem_get_info`; on the CPU, MemAvailable from
/proc/meminfo (the total when that cannot be read). Imports only errors and torch, so data,
models and commands may all use it.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from ganrun.errors import UserError

HEADROOM = 0.8  # use at most this fraction of what is available: the rest is for everything else


def available_bytes(device: torch.device | str = "cpu") -> int:
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def require(key: str, value: int, bytes_per_unit: float, device: torch.device | str = "cpu", *,
            fixed_bytes: float = 0.0, power: int = 1, what: str = "", hint: str = "") -> None:
    """Refuse `key=value` when `fixed_bytes + bytes_per_unit * value**power` does not fit on `device`.

    `bytes_per_unit` is what one unit of `value` costs (one image, one point, ...); `power=2` for a
    side length whose cost grows with its square.
    """
    need = fixed_bytes + bytes_per_unit * float(value) ** power
    budget = available_bytes(device) * HEADROOM
    if need <= budget:
        return
    room = budget - fixed_bytes
    fits = int((room / bytes_per_unit) ** (1 / power)) if bytes_per_unit > 0 and room > 0 else 0
    device = torch.device(device)
    raise UserError(f"{key}={value} cannot fit: {human(need)} needed{' for ' + what if what else ''}, but "
                    f"{device.type} has {human(budget / HEADROOM)} available; at most {key}={fits} would fit"
                    + (f" ({hint})" if hint else ""))


def parameter_bytes(*modules: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def meta_build(build, *args) -> Optional[tuple]:
    """Build modules on the meta device (no memory) to size them; None when a builder cannot."""
    try:
        with torch.device("meta"):
            return build(*args)
    except UserError:
        raise
    except (RuntimeError, ValueError, OverflowError, NotImplementedError):
        return None


def require_model(model_cfg, spec, build, device: torch.device | str, *, copies: int = 5, key: str = "model") -> None:
    """Refuse model sizes whose G and D cannot be trained on `device`, naming the size field to lower.

    Sized on the meta device (no memory). Training holds about `copies` times the parameter bytes:
    weights, gradients, two Adam moments and the EMA copy of G. The field named is the int field of
    the model's schema whose value costs the most; "at most" is its largest value that would fit,
    estimated as if the parameters grew linearly with it.
    """
    import dataclasses

    built = meta_build(build, model_cfg, spec)
    if built is None:
        return
    need = copies * parameter_bytes(*built)
    budget = available_bytes(device) * HEADROOM
    if need <= budget:
        return
    culprit = None  # (cost of the field's value above 1, field name, value)
    for f in dataclasses.fields(model_cfg):
        value = getattr(model_cfg, f.name)
        if type(value) is not int or value <= 1:
            continue
        small = meta_build(build, dataclasses.replace(model_cfg, **{f.name: 1}), spec)
        if small is not None:
            cost = need - copies * parameter_bytes(*small)
            if culprit is None or cost > culprit[0]:
                culprit = (cost, f.name, value)
    device = torch.device(device)
    where = (f"G and D need {human(need)} to train (weights, gradients, optimizer moments, EMA) but {device.type} "
             f"has {human(budget / HEADROOM)} available")
    if culprit is None or culprit[0] <= 0:
        raise UserError(f"{key}={model_cfg.name} cannot fit: {where}")
    cost, name, value = culprit
    per_unit = cost / (value - 1)
    fits = max(1, int((budget - (need - cost)) // per_unit) + 1) if budget > need - cost else 0
    raise UserError(f"{key}.{name}={value} cannot fit: {where}; at most {key}.{name}={fits} would fit")
