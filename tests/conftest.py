"""Shared fixtures: tiny real data on disk, the CLI in a subprocess, composed configs."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

try:  # property tests (tests/test_properties.py): the same examples on every run and every machine
    from hypothesis import HealthCheck, Phase, settings

    # no shrinking: a failing example is reported as found (shrinking CLI runs takes minutes)
    settings.register_profile("ganrun", derandomize=True, deadline=None, database=None, print_blob=True,
                              phases=[Phase.explicit, Phase.generate],
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                     HealthCheck.data_too_large, HealthCheck.filter_too_much])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ganrun"))
except ImportError:  # hypothesis is in the test extras; without it only test_properties.py is skipped
    pass

def subprocess_env() -> dict:
    """The environment of a `python -m ganrun` the tests start: this checkout first on the path, no
    GANRUN_DATA of the caller's, one OpenMP thread (tiny models: threads only spin against each
    other on a shared box)."""
    e = dict(os.environ)
    e.pop("GANRUN_DATA", None)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


# Tiny and fast: CPU, few steps, no config tree, plain progress.
FAST = [
    "device=cpu",
    "logger.print_config=false",
    "trainer.log_every=5",
    "trainer.sample_every=10",
    "trainer.checkpoint_every=10",
]


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> None:
    """Write an MNIST-format IDX file (magic 0x08 0x<ndim>, big-endian dims, uint8 data)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_idx_dataset(root: Path, n_train: int = 512, n_test: int = 256, size: int = 28, seed: int = 0) -> Path:
    """A Fashion-MNIST-format folder: 10 classes, each a distinct blob position, plus noise."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, size, size)).astype(np.uint8)
        for i, label in enumerate(labels):
            r, c = divmod(int(label), 5)
            images[i, 4 + r * 10 : 12 + r * 10, 2 + c * 5 : 6 + c * 5] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("fashion"))


def make_image_folder(root: Path, classes=("cats", "dogs"), per_class: int = 6, size: int = 20, mode: str = "RGB") -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for k, name in enumerate(classes):
        for i in range(per_class):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            arr = rng.integers(0, 255, size=shape).astype(np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr, mode=mode).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def cli_env(tmp_path) -> dict:
    """`subprocess_env()` with this test's own feature cache."""
    return {**subprocess_env(), "GANRUN_CACHE": str(tmp_path / "cache")}


def run_ganrun(args, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """`ganrun <args>` as a user runs it (the package's `python -m ganrun` entry), captured."""
    return subprocess.run([sys.executable, "-m", "ganrun", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def fork_server():
    """One `tests/cli_fork.py` server for the session's `ganrun` fixture calls: each call is a
    forked child that has torch and ganrun's CLI imported already (a fresh `python -m ganrun`
    spends seconds importing them), then runs `ganrun.cli.main` as the entry point does."""
    from tests.cli_fork import ForkServer

    server = ForkServer(subprocess_env())
    yield server
    server.close()


@pytest.fixture
def ganrun(tmp_path, cli_env, fork_server):
    """Call as ganrun("train", "dataset=ring8", ...) → a result with returncode, stdout and stderr;
    runs in tmp_path as a child of the session's fork server, or as `python -m ganrun` when the
    call's env drops a variable the server has (a child can only add and change them)."""
    base = subprocess_env()

    def call(*args, timeout: float = 300, env: dict | None = None):
        env = env or cli_env
        if set(base) - set(env):
            return run_ganrun(args, tmp_path, env, timeout)
        changed = {k: v for k, v in env.items() if base.get(k) != v}
        return fork_server.run(args, tmp_path, env=changed, timeout=timeout)

    return call


@pytest.fixture
def compose_train():
    """compose_train([...overrides]) → the composed train DictConfig."""
    import ganrun.losses  # noqa: F401  (the regularizers store the loss schema)
    import ganrun.models  # noqa: F401  (the model families store their schemas)
    from ganrun.config.compose import compose

    return lambda overrides=(): compose("train", list(overrides))


def read_events(run_dir: Path):
    """TensorBoard's own reader over the run dir's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc
