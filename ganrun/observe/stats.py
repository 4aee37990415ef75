"""Accumulate step statistics on the device; read them to the host once per log interval."""

from __future__ import annotations

import torch


class Stats:
    """`report(dict of 0-d tensors)` every step (device-side sums); `collect()` → means as floats."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def report(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            if name in self._sums:
                self._sums[name] += value
                self._counts[name] += 1
            else:
                self._sums[name] = value.clone()
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
