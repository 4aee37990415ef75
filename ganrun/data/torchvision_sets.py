"""CIFAR-10 through torchvision, from a local copy or (with dataset.download=true) the network."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ganrun.data.base import DATASETS, ArrayDataset, DataSpec, candidate_roots, not_found
from ganrun.errors import UserError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@DATASETS.register("cifar10")
def cifar10(cfg, split: str) -> ArrayDataset:
    import torchvision

    roots = candidate_roots("cifar10", cfg.root, ("cifar10", "cifar-10"))
    found = next((r for r in roots if (r / "cifar-10-batches-py").is_dir()), None)
    if found is None and cfg.download:
        found = roots[0] if cfg.root else Path(os.environ.get("GANRUN_DATA", "~/.cache/ganrun/data")).expanduser()
    if found is None:
        raise not_found("cifar10", roots, "set dataset.root or $GANRUN_DATA to the folder holding "
                        "cifar-10-batches-py/, or pass dataset.download=true where there is a network")
    try:
        tv = torchvision.datasets.CIFAR10(root=str(found), train=split == "train", download=cfg.download)
    except Exception as exc:  # noqa: BLE001 - corrupt or missing batches, failed download
        raise UserError(f"cannot load CIFAR-10 from {found}: {str(exc).splitlines()[0]}") from None
    data = torch.from_numpy(tv.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32) uint8
    labels = torch.tensor(tv.targets, dtype=torch.long)
    spec = DataSpec(name="cifar10", kind="image", shape=tuple(data.shape[1:]), num_classes=10,
                    size=len(data), class_names=CIFAR10_CLASSES)
    return ArrayDataset(data=data, labels=labels, spec=spec, source=str(found))
