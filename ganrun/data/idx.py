"""MNIST-format IDX files: MNIST and Fashion-MNIST.

Read directly (gzip or raw; 16-byte header for images, 8 for labels), so Debian's recompressed
copies work where torchvision's checksums reject them. A root may hold the four files itself or
in torchvision's `<Class>/raw/` layout.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ganrun.data.base import DATASETS, ArrayDataset, DataSpec, candidate_roots, not_found
from ganrun.errors import UserError

IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension
PREFIX = {"train": "train", "test": "t10k"}

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array, checking magic and length."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: corrupt compressed data
        raise UserError(f"cannot read {path}: {exc} (re-download or reinstall the dataset)") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated (only {len(raw)} bytes); re-download it")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(
            f"{path} is not an IDX file of the expected kind (magic 0x{found:08x}, expected "
            f"0x{magic:08x}); check dataset.root"
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if ndim > 1 and 0 in dims[1:]:
        raise UserError(f"{path} holds images of size {' x '.join(map(str, dims[1:]))} (header shape {tuple(dims)}): "
                        "an image needs at least one pixel; re-download it or check dataset.root")
    expected = math.prod(dims)  # Python ints: a header of huge dims cannot overflow into a match
    if len(raw) - header != expected:
        raise UserError(
            f"{path} is truncated or corrupt: {len(raw) - header} bytes of data for shape "
            f"{tuple(dims)} ({expected} expected); re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(roots: list[Path], tv_class: str, split: str) -> Optional[tuple[Path, Path]]:
    prefix = PREFIX[split]
    for root in roots:
        for folder in (root, root / tv_class / "raw"):
            images = find_file(folder, f"{prefix}-images-idx3-ubyte")
            labels = find_file(folder, f"{prefix}-labels-idx1-ubyte")
            if images and labels:
                return images, labels
    return None


def _download(tv_class: str, root: Path) -> None:
    import torchvision

    try:
        getattr(torchvision.datasets, tv_class)(root=str(root), train=True, download=True)
        getattr(torchvision.datasets, tv_class)(root=str(root), train=False, download=True)
    except Exception as exc:  # noqa: BLE001 - any network/checksum failure is the user's to fix
        raise UserError(f"download of {tv_class} into {root} failed: {str(exc).splitlines()[0]}") from None


def load_idx_dataset(cfg, split: str, *, name: str, dirnames: tuple[str, ...], tv_class: str,
                     how: str, class_names: tuple[str, ...]) -> ArrayDataset:
    roots = candidate_roots(name, cfg.root, dirnames)
    found = _locate(roots, tv_class, split)
    if found is None and cfg.download:
        target = roots[0] if cfg.root else Path(os.environ.get("GANRUN_DATA", "~/.cache/ganrun/data")).expanduser()
        _download(tv_class, target)
        found = _locate([target], tv_class, split)
    if found is None:
        raise not_found(name, roots, how)
    images_path, labels_path = found
    images = read_idx(images_path, IMAGE_MAGIC)
    labels = read_idx(labels_path, LABEL_MAGIC)
    if len(images) != len(labels):
        raise UserError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    data = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
    targets = torch.from_numpy(labels.astype(np.int64))
    if len(targets) and int(targets.max()) >= len(class_names):
        raise UserError(f"{labels_path} has label {int(targets.max())}; {name} has {len(class_names)} classes")
    spec = DataSpec(name=name, kind="image", shape=tuple(data.shape[1:]), num_classes=len(class_names),
                    size=len(data), class_names=class_names)
    return ArrayDataset(data=data, labels=targets, spec=spec, source=str(images_path.parent))


@DATASETS.register("fashion_mnist")
def fashion_mnist(cfg, split: str) -> ArrayDataset:
    return load_idx_dataset(
        cfg, split, name="fashion_mnist", dirnames=("fashion-mnist", "fashion_mnist"),
        tv_class="FashionMNIST", class_names=FASHION_CLASSES,
        how="install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), "
            "set dataset.root or $GANRUN_DATA to a folder with the IDX files, or pass "
            "dataset.download=true where there is a network",
    )


@DATASETS.register("mnist")
def mnist(cfg, split: str) -> ArrayDataset:
    return load_idx_dataset(
        cfg, split, name="mnist", dirnames=("mnist",), tv_class="MNIST",
        class_names=tuple(str(i) for i in range(10)),
        how="set dataset.root or $GANRUN_DATA to a folder with the MNIST IDX files, or pass "
            "dataset.download=true where there is a network",
    )
