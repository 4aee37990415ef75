"""Accumulate step statistics on the device; read them to the host once per log interval."""

from __future__ import annotations

import torch


class Stats:
    """`report(dict of 0-d tensors)` every step (device-side sums); `collect()` → means as floats."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def report(self, values: dict[str, torch.Tensor]) -> None:
        # one fused add for the names already seen: a dozen stats cost one kernel launch, not twelve
        # (it matters when the step itself is a single CUDA graph replay)
        seen = [name for name in values if name in self._sums]
        if seen:
            torch._foreach_add_([self._sums[n] for n in seen], [values[n].detach().float() for n in seen])
            for name in seen:
                self._counts[name] += 1
        for name, value in values.items():
            if name not in self._counts:
                self._sums[name] = value.detach().float().clone()
                self._counts[name] = 1

    def collect(self) -> dict[str, float]:
        """Means since the last collect. The one CPU-GPU sync point of the loop."""
        if not self._sums:
            return {}
        names = list(self._sums)
        values = torch.stack([self._sums[n] for n in names]).cpu().tolist()
        out = {n: v / self._counts[n] for n, v in zip(names, values)}
        self._sums.clear()
        self._counts.clear()
        return out
