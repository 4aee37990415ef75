"""Data: IDX files, image folders, 2-D mixtures, root resolution, the batch source."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ganrun.config.schema import DatasetConfig
from ganrun.data import build_dataset, to_model_range
from ganrun.data.loader import BatchSource
from ganrun.errors import UserError
from tests.conftest import make_idx_dataset, make_image_folder, write_idx


def ds_cfg(name: str, **kw) -> DatasetConfig:
    return replace(DatasetConfig(name=name), **kw)


def test_idx_files_load_as_uint8_with_labels(tmp_path):
    make_idx_dataset(tmp_path, n_train=40, n_test=20)
    ds = build_dataset(ds_cfg("fashion_mnist", root=str(tmp_path)))
    assert ds.data.dtype == torch.uint8 and ds.data.shape == (40, 1, 28, 28)
    assert ds.labels.dtype == torch.long and ds.labels.shape == (40,)
    assert ds.spec.shape == (1, 28, 28) and ds.spec.num_classes == 10 and ds.spec.size == 40
    test = build_dataset(ds_cfg("fashion_mnist", root=str(tmp_path)), split="test")
    assert len(test.data) == 20


def test_uncompressed_idx_and_torchvision_raw_layout(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images, gz=False)
    write_idx(raw / "train-labels-idx1-ubyte", np.array([1, 2, 3], dtype=np.uint8), gz=False)
    ds = build_dataset(ds_cfg("mnist", root=str(tmp_path)))
    assert torch.equal(ds.data[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == [1, 2, 3]


def test_idx_wrong_magic_and_truncation_are_user_errors(tmp_path):
    make_idx_dataset(tmp_path, n_train=8, n_test=4)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    import gzip

    good = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(good[:-100]))
    with pytest.raises(UserError, match="truncated"):
        build_dataset(ds_cfg("fashion_mnist", root=str(tmp_path)))
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + good[4:]))
    with pytest.raises(UserError, match="magic"):
        build_dataset(ds_cfg("fashion_mnist", root=str(tmp_path)))


def test_root_resolution_order_and_not_found_message(tmp_path, monkeypatch):
    env_root = tmp_path / "env"
    make_idx_dataset(env_root / "fashion-mnist", n_train=8, n_test=4)
    monkeypatch.setenv("GANRUN_DATA", str(env_root))
    assert build_dataset(ds_cfg("fashion_mnist")).source.startswith(str(env_root / "fashion-mnist"))
    monkeypatch.setenv("GANRUN_DATA", str(tmp_path / "empty"))
    with pytest.raises(UserError) as err:
        build_dataset(ds_cfg("mnist"))
    msg = str(err.value)
    assert "tried:" in msg and str(tmp_path / "empty" / "mnist") in msg and "/usr/share/datasets/mnist" in msg
    assert "dataset.download=true" in msg and "\n" not in msg


def test_image_folder_classes_modes_and_resize(tmp_path):
    make_image_folder(tmp_path / "rgb", classes=("a", "b", "c"), per_class=4, size=20)
    ds = build_dataset(ds_cfg("folder", root=str(tmp_path / "rgb"), image_size=16))
    assert ds.data.shape == (12, 3, 16, 16) and ds.data.dtype == torch.uint8
    assert ds.spec.num_classes == 3 and sorted(set(ds.labels.tolist())) == [0, 1, 2]
    make_image_folder(tmp_path / "gray", classes=("x",), per_class=5, size=12, mode="L")
    gray = build_dataset(ds_cfg("folder", root=str(tmp_path / "gray"), image_size=None))
    assert gray.data.shape == (5, 1, 12, 12) and gray.labels is None and gray.spec.num_classes == 0


def test_image_folder_skips_unreadable_files_with_a_count(tmp_path):
    make_image_folder(tmp_path, classes=("a", "b"), per_class=3, size=8)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = build_dataset(ds_cfg("folder", root=str(tmp_path), image_size=8))
    assert len(ds.data) == 6 and any("skipped 1" in n for n in ds.notes)


def test_image_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no images"):
        build_dataset(ds_cfg("folder", root=str(tmp_path)))
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (9, 9)).save(tmp_path / "b.png")
    with pytest.raises(UserError, match="different sizes.*dataset.image_size"):
        build_dataset(ds_cfg("folder", root=str(tmp_path), image_size=None))


@pytest.mark.parametrize("name, n_modes, std, radius", [("ring8", 8, 0.01, 1.0), ("grid25", 25, 0.05, 4 * math.sqrt(2))])
def test_mixtures_have_the_published_modes(name, n_modes, std, radius):
    ds = build_dataset(ds_cfg(name, num_points=20_000))
    centers = torch.tensor(ds.spec.centers)
    assert centers.shape == (n_modes, 2) and ds.spec.mode_std == std
    assert centers.norm(dim=1).max().item() == pytest.approx(radius)
    nearest = torch.cdist(ds.data, centers).min(dim=1)
    residual = ds.data - centers[nearest.indices]
    assert residual.std().item() == pytest.approx(std, rel=0.05)
    counts = torch.bincount(nearest.indices, minlength=n_modes).float()
    assert counts.min() > 0.8 * counts.mean()
    assert torch.equal(ds.data, build_dataset(ds_cfg(name, num_points=20_000)).data)  # fixed data seed


def test_model_range_scaling():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8)
    assert to_model_range(x).tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_batch_source_epochs_cover_the_data_and_resume_exactly(tmp_path):
    make_idx_dataset(tmp_path, n_train=64, n_test=8)
    ds = build_dataset(ds_cfg("fashion_mnist", root=str(tmp_path)))
    src = BatchSource(ds, 16, torch.device("cpu"), seed=3)
    epoch = torch.cat([src.next()[0] for _ in range(4)])
    assert sorted(epoch.flatten(1).sum(1).tolist()) == sorted(ds.data.flatten(1).sum(1).tolist())
    for _ in range(3):
        src.next()
    state = src.state_dict()
    expected = [src.next()[1] for _ in range(6)]
    again = BatchSource(ds, 16, torch.device("cpu"), seed=3)
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, [again.next()[1] for _ in range(6)]))
    with pytest.raises(UserError, match="batch_size"):
        BatchSource(ds, 65, torch.device("cpu"), seed=0)


def test_cifar10_batches_load_as_uint8_nchw(tmp_path, monkeypatch):
    """torchvision's python batches (here tiny fakes; its md5 check is bypassed) → (N, 3, 32, 32) uint8."""
    import pickle

    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(4, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=4)]
        rows[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["c%d" % i for i in range(10)]}, f)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    train = build_dataset(ds_cfg("cifar10", root=str(tmp_path)))
    assert train.data.shape == (20, 3, 32, 32) and train.data.dtype == torch.uint8
    first = torch.from_numpy(rows["data_batch_1"][0][0].reshape(3, 32, 32))
    assert torch.equal(train.data[0], first) and train.labels[:4].tolist() == rows["data_batch_1"][1]
    assert train.spec.num_classes == 10 and train.spec.shape == (3, 32, 32)
    test = build_dataset(ds_cfg("cifar10", root=str(tmp_path)), split="test")
    assert len(test.data) == 4
    resized = build_dataset(ds_cfg("cifar10", root=str(tmp_path), image_size=64))
    assert resized.data.shape == (20, 3, 64, 64)
