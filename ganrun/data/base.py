"""The dataset record, its spec, the registry and root resolution."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ganrun.errors import UserError
from ganrun.registry import Registry

SYSTEM_DATA_DIR = Path("/usr/share/datasets")


@dataclass(frozen=True)
class DataSpec:
    """Facts about a dataset that the model builder and the metrics derive sizes from."""

    name: str  # dataset config name
    kind: str  # "image" (uint8 storage, model range [-1, 1]) or "points" (float32 as is)
    shape: tuple[int, ...]  # one example: (C, H, W) or (2,)
    num_classes: int = 0  # 0: unlabelled
    size: int = 0  # number of examples
    class_names: tuple[str, ...] = ()
    centers: tuple[tuple[float, float], ...] = ()  # 2-D mixtures: mode centres
    mode_std: float = 0.0  # 2-D mixtures: std of each mode

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain containers (checkpoints hold no custom classes)."""
        return {"name": self.name, "kind": self.kind, "shape": list(self.shape), "num_classes": self.num_classes,
                "size": self.size, "class_names": list(self.class_names),
                "centers": [list(c) for c in self.centers], "mode_std": self.mode_std}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        """The inverse of `to_dict`."""
        return cls(name=d["name"], kind=d["kind"], shape=tuple(d["shape"]), num_classes=d["num_classes"],
                   size=d["size"], class_names=tuple(d["class_names"]),
                   centers=tuple(tuple(c) for c in d["centers"]), mode_std=d["mode_std"])


@dataclass
class ArrayDataset:
    """A whole dataset in memory: data (N, *spec.shape) and labels (N,) long or None."""

    data: torch.Tensor
    labels: Optional[torch.Tensor]
    spec: DataSpec
    source: str = ""  # where it was read from, for the run's record
    notes: list[str] = field(default_factory=list)  # warnings to show the user (skipped files)


Loader = Callable[..., ArrayDataset]
DATASETS: Registry[Loader] = Registry("dataset")


def build_dataset(cfg, split: Optional[str] = None) -> ArrayDataset:
    """Load the dataset named by `cfg.name` (a DatasetConfig) in memory, resized as configured.

    Reads only the dataset config group; `split` overrides `cfg.split` (eval uses "test").
    Raises UserError when the data cannot be found or read.
    """
    split = split or cfg.split
    ds = DATASETS.get(cfg.name)(cfg, split)
    if cfg.limit is not None:
        ds = _take(ds, cfg.limit)
    if ds.spec.is_image and cfg.image_size is not None and ds.spec.shape[1:] != (cfg.image_size,) * 2:
        ds = _resize(ds, cfg.image_size)
    return ds


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [-1, 1]; float data (points) passes through."""
    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    return x.float()


def _take(ds: ArrayDataset, n: int) -> ArrayDataset:
    labels = None if ds.labels is None else ds.labels[:n]
    data = ds.data[:n]
    return replace(ds, data=data, labels=labels, spec=replace(ds.spec, size=len(data)))


def _resize(ds: ArrayDataset, size: int, chunk: int = 4096) -> ArrayDataset:
    """Resize uint8 images once at load time (bilinear, antialiased), so training never does."""
    out = []
    for i in range(0, len(ds.data), chunk):
        x = ds.data[i : i + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    data = torch.cat(out)
    spec = replace(ds.spec, shape=(ds.spec.shape[0], size, size))
    return replace(ds, data=data, spec=spec)


def candidate_roots(name: str, configured: Optional[str], dirnames: Sequence[str]) -> list[Path]:
    """Where to look for a dataset, in order: the configured root, $GANRUN_DATA, the system folder."""
    if configured:
        return [Path(configured).expanduser()]
    roots: list[Path] = []
    env = os.environ.get("GANRUN_DATA")
    if env:
        base = Path(env).expanduser()
        roots += [base / d for d in dirnames] + [base]
    roots += [SYSTEM_DATA_DIR / d for d in dirnames]
    return roots


def not_found(name: str, tried: Sequence[Path], how: str) -> UserError:
    paths = ", ".join(str(p) for p in tried) or "(none)"
    return UserError(f"dataset '{name}' not found (tried: {paths}); {how}")
