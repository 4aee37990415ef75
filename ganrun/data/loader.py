"""An endless, seeded, resumable batch source.

Sets that fit are moved to the training device once, in their storage dtype (uint8 for images:
a quarter of float32), and batches are gathered there with a permutation per epoch; nothing is
decoded or transformed per sample on the host. With `device_resident=False` the set stays in
(pinned) host memory and each batch is copied over. Scaling to [-1, 1] and flips happen in the
training step, not here.

The order depends only on the seed: the state (epoch, position, generator state at the start
of the epoch) is saved in checkpoints, so a resumed run sees exactly the batches it would have.

Several processes (`rank` of `world_size`): `batch_size` is the global batch. Every rank draws the
same per-epoch permutation and takes its own contiguous slice of each global batch, so the ranks'
batches are disjoint and together are exactly the batch one process would see. The state is the
same on every rank and for any number of ranks, so a checkpoint resumes on another process count.
"""

from __future__ import annotations

from typing import Optional

import torch

from ganrun.data.base import ArrayDataset


class BatchSource:
    def __init__(self, dataset: ArrayDataset, batch_size: int, device: torch.device, *, seed: int,
                 device_resident: bool = True, rank: int = 0, world_size: int = 1) -> None:
        n = len(dataset.data)
        if batch_size > n:
            from ganrun.errors import UserError

            raise UserError(f"trainer.batch_size={batch_size} is larger than the dataset ({n} examples)")
        self.batch_size = batch_size  # global
        self.local_batch = batch_size // world_size
        self._offset = rank * self.local_batch  # this rank's slice of each global batch
        self.device = device
        self.resident = device_resident or device.type == "cpu"
        data = dataset.data
        labels = dataset.labels
        if self.resident:
            data = data.to(device)
            labels = None if labels is None else labels.to(device)
        elif device.type == "cuda":
            data = data.pin_memory()
            labels = None if labels is None else labels.pin_memory()
        self.data, self.labels = data, labels
        self.steps_per_epoch = n // batch_size  # the last partial batch of each epoch is dropped
        self._gen = torch.Generator().manual_seed(seed)
        self.epoch = 0
        self.position = 0
        self._epoch_state = self._gen.get_state()
        self._perm = self._new_perm()

    def _new_perm(self) -> torch.Tensor:
        self._epoch_state = self._gen.get_state()
        perm = torch.randperm(len(self.data), generator=self._gen)
        return perm.to(self.data.device)

    def next(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """This rank's next batch: data (B, ...) in storage dtype on the device, labels (B,) or None."""
        if self.position >= self.steps_per_epoch:
            self.epoch += 1
            self.position = 0
            self._perm = self._new_perm()
        start = self.position * self.batch_size + self._offset
        idx = self._perm[start : start + self.local_batch]
        self.position += 1
        x = self.data[idx]
        y = None if self.labels is None else self.labels[idx]
        if not self.resident:
            x = x.to(self.device, non_blocking=True)
            y = None if y is None else y.to(self.device, non_blocking=True)
        return x, y

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "generator": self._epoch_state}

    def load_state_dict(self, state: dict) -> None:
        self._gen.set_state(state["generator"])
        self._perm = self._new_perm()
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
