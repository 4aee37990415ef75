"""Bad input through the real CLI: each case exits with code 2, prints one line, no traceback.

Covers the issue's list: config (unknown key, wrong type, out-of-range value, unknown group
option with the choices, conflicting options, a missing required value), data (missing root,
empty folder, unreadable or truncated images, mixed sizes and modes, IDX files with a wrong magic,
truncated, or corrupt), checkpoints (missing, truncated, corrupted, another model family, data
shape or size, a newer format, not a ganrun file, weights only, pickled code) and run dirs that
hold an earlier run or sweep.

Every case is one `ganrun train ...` process. A module fixture runs them all up front through
`cli_fork.ForkServer` (a fresh forked child per case, running `ganrun.cli.main`, so torch is
imported once instead of forty times), and each parametrized test checks its own case's outcome;
`test_fork_server_is_faithful` runs some cases again as `python -m ganrun` and compares.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import torch

from tests.cli_fork import ForkServer
from tests.conftest import make_idx_dataset, make_image_folder, subprocess_env, write_idx

TINY = ["device=cpu", "logger.print_config=false", "logger.progress=none", "logger.tensorboard=false",
        "trainer.max_steps=2", "trainer.batch_size=8", "trainer.sample_every=0", "trainer.log_every=1"]


@dataclass
class Case:
    id: str
    setup: Callable[[Path, "Shared"], list[str]]  # (its own tmp dir, shared inputs) → CLI args after "train"
    pattern: str  # regex the one stderr line must match (after "ganrun: error: ")
    check: Optional[Callable[[Path, "Shared"], None]] = None  # extra assertion after the run
    kind: str = "config"  # config | data | checkpoint | run dir: for the report's counts


@dataclass
class Shared:
    run: Path  # a finished tiny ring8 run (checkpoints/last.pt, step_*.pt)
    idx: Path  # a Fashion-MNIST-format folder
    snapshot: dict[str, bytes]  # the run's files before any case ran: nothing may change them


env = subprocess_env  # the environment of the `python -m ganrun` these tests start


def ganrun(args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganrun", *map(str, args)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


# -- inputs made by the cases --------------------------------------------------------------------

def crafted(shared: Shared, tmp: Path, **changes) -> Path:
    """The good checkpoint with some entries changed (None: removed), saved as plain torch.save."""
    state = torch.load(shared.run / "checkpoints" / "last.pt", weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    path = tmp / "crafted.pt"
    torch.save(state, path)
    return path


def truncated(shared: Shared, tmp: Path, fraction: float) -> Path:
    raw = (shared.run / "checkpoints" / "last.pt").read_bytes()
    path = tmp / f"truncated_{fraction}.pt"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    return path


def junk_file(tmp: Path) -> Path:
    path = tmp / "junk.pt"
    path.write_bytes(b"model weights, honest\n" * 10)
    return path


def corrupted(shared: Shared, tmp: Path) -> Path:
    raw = bytearray((shared.run / "checkpoints" / "last.pt").read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 8] = bytes(b ^ 0xFF for b in raw[middle : middle + 8])  # inside a weight tensor
    path = tmp / "corrupted.pt"
    path.write_bytes(bytes(raw))
    return path


class Exec:
    """Unpickling this runs `code` (a pickle's REDUCE of builtins.exec)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def evil_zip(shared: Shared, tmp: Path) -> Path:
    marker = tmp / "pwned_zip"
    return crafted(shared, tmp, G=Exec(f"open({str(marker)!r}, 'w').close()"))


def evil_pickle(tmp: Path) -> Path:
    import pickle

    marker = tmp / "pwned_pickle"
    path = tmp / "evil.pt"
    # protocol 2: the restricted unpickler reads up to the GLOBAL (newer protocols stop at the first FRAME)
    path.write_bytes(pickle.dumps({"G": Exec(f"open({str(marker)!r}, 'w').close()")}, protocol=2))
    return path


def no_marker(name: str):
    def check(tmp: Path, shared: Shared) -> None:
        assert not (tmp / name).exists(), "the pickled code ran"

    return check


def folder_of(tmp: Path, files: dict[str, Callable[[Path], None]]) -> Path:
    root = tmp / "images"
    root.mkdir()
    for name, write in files.items():
        write(root / name)
    return root


def png(size=(20, 20), mode="RGB"):
    def write(path: Path) -> None:
        from PIL import Image

        Image.new(mode, size, color=128 if mode in ("L", "P") else (100, 150, 200)[: len(mode)]).save(path)

    return write


def junk(data: bytes):
    return lambda path: path.write_bytes(data)


def idx_args(tmp: Path, mutate: Callable[[Path], None]) -> list[str]:
    """A tiny Fashion-MNIST folder whose train images file `mutate` damages, as CLI args."""
    root = tmp / "fashion"
    make_idx_dataset(root, n_train=32, n_test=16)
    mutate(root / "train-images-idx3-ubyte.gz")
    return ["dataset=fashion_mnist", f"dataset.root={root}", *TINY]


def folder_args(tmp: Path, files: dict[str, Callable[[Path], None]]) -> list[str]:
    return ["dataset=folder", f"dataset.root={folder_of(tmp, files)}", *TINY]


def fewer_labels(images: Path) -> None:
    write_idx(images.with_name("train-labels-idx1-ubyte"), np.zeros(5, np.uint8))


def cut_png(path: Path) -> None:
    png()(path)
    path.write_bytes(path.read_bytes()[:40])


def regz(mutate_raw: Callable[[bytes], bytes]):
    """Rewrite a .gz IDX file with its decompressed bytes changed."""

    def mutate(path: Path) -> None:
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(mutate_raw(raw)))

    return mutate


def corrupt_gz(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(20, min(len(data) - 8, 60)):  # inside the deflate stream, past the gzip header
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def unchanged(tmp: Path, shared: Shared) -> None:
    now = {p: (shared.run / p).read_bytes() for p in shared.snapshot}
    assert now == shared.snapshot, "an earlier run's files were changed"
    assert sorted(p.name for p in (shared.run / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]


def a_file(tmp: Path) -> Path:
    path = tmp / "afile"
    path.write_text("not a folder\n")
    return path


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# -- the cases -----------------------------------------------------------------------------------

RING = ["dataset=ring8", *TINY]

CASES = [
    # config: fail while composing, before any work
    Case("unknown-key", lambda t, s: [*RING, "trainer.max_stpes=3"],
         r"invalid config for 'trainer\.max_stpes': Key 'max_stpes' not in 'TrainerConfig'"),
    Case("wrong-type", lambda t, s: [*RING, "trainer.batch_size=lots"],
         r"invalid config for 'trainer\.batch_size': Value 'lots' of type 'str' could not be converted to Integer"),
    Case("out-of-range", lambda t, s: [*RING, "optimizer.lr=-1"], r"optimizer\.lr must be > 0, got -1"),
    Case("out-of-range-choice", lambda t, s: [*RING, "trainer.compile=fast"],
         r"trainer\.compile must be one of none, graph, inductor; got 'fast'"),
    Case("unknown-group-option", lambda t, s: [*RING, "model=dcgn"],
         r"unknown model 'dcgn' \(choose from: .*mlp.*\)"),
    Case("conflicting-options", lambda t, s: [*RING, "model=mlp", "model.conditional=true"],
         r"model=mlp is conditional but dataset=ring8 has no class labels; choose a labelled dataset"),
    Case("missing-required", lambda t, s: ["dataset=folder", *TINY],
         r"dataset=folder needs dataset\.root=/path/to/images"),
    # data
    Case("idx-missing-root", lambda t, s: ["dataset=fashion_mnist", f"dataset.root={t / 'nowhere'}", *TINY],
         r"dataset 'fashion_mnist' not found \(tried: .*nowhere\); install", kind="data"),
    Case("folder-missing-root", lambda t, s: ["dataset=folder", f"dataset.root={t / 'nowhere'}", *TINY],
         r"dataset\.root .*nowhere is not a directory", kind="data"),
    Case("folder-empty", lambda t, s: folder_args(t, {}),
         r"no images \(.*\) found under .*images", kind="data"),
    Case("folder-no-images-only-other-files",
         lambda t, s: folder_args(t, {"notes.txt": junk(b"hi")}),
         r"no images \(.*\) found under .*images", kind="data"),
    Case("folder-all-unreadable",
         lambda t, s: folder_args(t, {"a.png": junk(b"not a png"), "b.jpg": junk(b"\xff\xd8\xff garbage"),
                                      "c.png": cut_png}),
         r"none of the 3 image files under .*images could be read", kind="data"),
    Case("folder-mixed-sizes",
         lambda t, s: [*folder_args(t, {f"{i}.png": png((20 + 4 * (i % 2), 20)) for i in range(8)}),
                       "dataset.image_size=null"],
         r"images under .*images have 2 different sizes \(e\.g\. .*\); set dataset\.image_size", kind="data"),
    Case("idx-wrong-magic", lambda t, s: idx_args(t, regz(lambda raw: b"\x00\x00\x08\x01" + raw[4:])),
         r"train-images-idx3-ubyte\.gz is not an IDX file of the expected kind \(magic 0x00000801, "
         r"expected 0x00000803\)", kind="data"),
    Case("idx-truncated-data", lambda t, s: idx_args(t, regz(lambda raw: raw[: len(raw) // 2])),
         r"train-images-idx3-ubyte\.gz is truncated or corrupt: \d+ bytes of data for shape \(32, 28, 28\)",
         kind="data"),
    Case("idx-truncated-header", lambda t, s: idx_args(t, regz(lambda raw: raw[:10])),
         r"train-images-idx3-ubyte\.gz is truncated \(only 10 bytes\)", kind="data"),
    Case("idx-truncated-gzip", lambda t, s: idx_args(t, lambda p: p.write_bytes(p.read_bytes()[:200])),
         r"cannot read .*train-images-idx3-ubyte\.gz: .*\(re-download", kind="data"),
    Case("idx-corrupt-gzip", lambda t, s: idx_args(t, corrupt_gz),
         r"cannot read .*train-images-idx3-ubyte\.gz: .*\(re-download", kind="data"),
    Case("idx-label-count", lambda t, s: idx_args(t, fewer_labels),
         r"has 32 images but .*train-labels-idx1-ubyte\.gz has 5 labels", kind="data"),
    # checkpoints (trainer.resume)
    Case("ckpt-missing", lambda t, s: [f"trainer.resume={t / 'nope.pt'}"],
         r"checkpoint .*nope\.pt does not exist", kind="checkpoint"),
    Case("ckpt-dir-without-checkpoint", lambda t, s: [f"trainer.resume={t}"],
         r"no checkpoint in .* \(looked for checkpoints/last\.pt, checkpoints/step_\*\.pt and checkpoints/best\.pt\)", kind="checkpoint"),
    Case("ckpt-empty-file", lambda t, s: [f"trainer.resume={truncated(s, t, 0.0)}"],
         r"cannot load checkpoint .*truncated_0\.0\.pt: the file is empty",
         kind="checkpoint"),
    Case("ckpt-truncated-half", lambda t, s: [f"trainer.resume={truncated(s, t, 0.5)}"],
         r"cannot load checkpoint .*truncated_0\.5\.pt: the file is truncated, corrupt", kind="checkpoint"),
    Case("ckpt-truncated-end", lambda t, s: [f"trainer.resume={truncated(s, t, 0.9999)}"],
         r"cannot load checkpoint .*truncated_0\.9999\.pt: the file is truncated, corrupt", kind="checkpoint"),
    Case("ckpt-junk-file", lambda t, s: [f"trainer.resume={junk_file(t)}"],
         r"cannot load checkpoint .*junk\.pt: the file is truncated, corrupt or not written by torch\.save",
         kind="checkpoint"),
    Case("ckpt-corrupted-bytes", lambda t, s: [f"trainer.resume={corrupted(s, t)}"],
         r"cannot load checkpoint .*corrupted\.pt: the file is corrupt \(checksum mismatch in .*\)",
         kind="checkpoint"),
    Case("ckpt-other-family", lambda t, s: [
             f"trainer.resume={crafted(s, t, model_id={'model': 'dcgan', 'shape': [2], 'num_classes': 0, 'conditional': False})}"],
         r"checkpoint .*crafted\.pt is for another model \(model: checkpoint 'dcgan' vs config 'mlp'\)",
         kind="checkpoint"),
    Case("ckpt-other-data-shape", lambda t, s: [
             f"trainer.resume={s.run}", "dataset=fashion_mnist", f"dataset.root={s.idx}"],
         r"checkpoint .*last\.pt is for another model \(shape: checkpoint \[2\] vs config \[1, 28, 28\]; "
         r"num_classes: checkpoint 0 vs config 10\)",
         check=unchanged, kind="checkpoint"),
    Case("ckpt-other-model-size", lambda t, s: [f"trainer.resume={s.run}", "model.latent_dim=64"],
         r"checkpoint .*last\.pt does not fit the configured generator \(size mismatch for .*\); was it written "
         r"with other model options", check=unchanged, kind="checkpoint"),
    Case("ckpt-newer-format", lambda t, s: [f"trainer.resume={crafted(s, t, format_version=2)}"],
         r"crafted\.pt has checkpoint format 2, newer than this ganrun reads \(1\); upgrade ganrun", kind="checkpoint"),
    Case("ckpt-not-ganrun", lambda t, s: [f"trainer.resume={crafted(s, t, G=None, config=None)}"],
         r"crafted\.pt is not a ganrun checkpoint \(missing keys\)", kind="checkpoint"),
    Case("ckpt-weights-only", lambda t, s: [f"trainer.resume={crafted(s, t, opt_G=None, opt_D=None, rng=None)}"],
         r"checkpoint .*crafted\.pt cannot be resumed: it lacks opt_G, opt_D, rng", kind="checkpoint"),
    Case("ckpt-pickled-code-zip", lambda t, s: [f"trainer.resume={evil_zip(s, t)}"],
         r"cannot load checkpoint .*crafted\.pt: it contains pickled Python objects \(exec\) that ganrun refuses "
         r"to load \(only tensors and plain containers are allowed; nothing in it was executed\)",
         check=no_marker("pwned_zip"), kind="checkpoint"),
    Case("ckpt-pickled-code-raw", lambda t, s: [f"trainer.resume={evil_pickle(t)}"],
         r"cannot load checkpoint .*evil\.pt: it contains pickled Python objects \(exec\) that ganrun refuses",
         check=no_marker("pwned_pickle"), kind="checkpoint"),
    # run dirs
    Case("run-dir-of-earlier-run", lambda t, s: [*RING, f"hydra.run.dir={s.run}"],
         r"hydra\.run\.dir=.* already holds a run \(checkpoints/\); choose another hydra\.run\.dir, or continue",
         check=unchanged, kind="run dir"),
    Case("run-dir-resuming-another-checkpoint",
         lambda t, s: [f"trainer.resume={s.run / 'checkpoints' / 'step_0000002.pt'}", f"hydra.run.dir={s.run}"],
         r"hydra\.run\.dir=.* already holds a run", check=unchanged, kind="run dir"),
    # an earlier sweep's hydra.sweep.dir is no error: the sweep reruns (tests/test_sweeps.py)
    Case("run-dir-under-a-file", lambda t, s: [*RING, f"hydra.run.dir={a_file(t) / 'run'}"],
         r"hydra\.run\.dir=.* cannot be created: .*afile is a file, not a directory", kind="run dir"),
]


@pytest.fixture(scope="module")
def server():
    server = ForkServer(env())
    yield server
    server.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, server) -> Shared:
    base = tmp_path_factory.mktemp("shared")
    run = base / "run"
    r = server.run(["train", *RING, "trainer.checkpoint_every=2", "trainer.keep_last=1", f"hydra.run.dir={run}"], base)
    assert r.returncode == 0, r.stderr
    return Shared(run=run, idx=make_idx_dataset(base / "fashion", n_train=64, n_test=16), snapshot=snapshot(run))


@pytest.fixture(scope="module")
def outcomes(shared, server, tmp_path_factory) -> dict[str, tuple[Path, list[str], object]]:
    """Every case's (folder, argv, result), run two at a time (one per core)."""
    todo = []
    for case in CASES:
        tmp = tmp_path_factory.mktemp(case.id)
        todo.append((case.id, tmp, ["train", *case.setup(tmp, shared)]))
    results, running = {}, []
    while todo or running:
        while todo and len(running) < 2:
            case_id, tmp, args = todo.pop(0)
            running.append((case_id, tmp, args, server.start(args, tmp)))
        for item in list(running):
            case_id, tmp, args, job = item
            if job.poll() is not None:
                results[case_id] = (tmp, args, job.wait())
                running.remove(item)
        time.sleep(0.02)
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case: Case, outcomes, shared):
    tmp, _, result = outcomes[case.id]
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(r"ganrun: error: .*", lines[0]), lines[0]
    assert re.search(case.pattern, lines[0]), f"{case.pattern!r} not in {lines[0]!r}"
    if case.check:
        case.check(tmp, shared)


@pytest.mark.parametrize("case_id", ["unknown-group-option", "ckpt-pickled-code-raw"])
def test_fork_server_is_faithful(case_id, outcomes):
    """The same case as a plain `python -m ganrun` process gives the same exit code and output."""
    tmp, args, forked = outcomes[case_id]
    direct = ganrun(args, tmp)
    assert (direct.returncode, direct.stdout, direct.stderr) == (forked.returncode, forked.stdout, forked.stderr)


def test_case_counts():
    """The report's numbers: how many bad inputs of each kind this file covers."""
    kinds = {}
    for case in CASES:
        kinds[case.kind] = kinds.get(case.kind, 0) + 1
    assert kinds == {"config": 7, "data": 12, "checkpoint": 15, "run dir": 3}, kinds


# -- inputs that are accepted, with a documented behaviour ----------------------------------------

def test_unreadable_images_are_skipped_with_a_counted_warning(tmp_path, server):
    root = make_image_folder(tmp_path / "images", per_class=6, size=16)
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (root / "dogs" / "0.png").read_bytes()
    (root / "dogs" / "truncated.png").write_bytes(good[: len(good) // 2])
    r = server.run(["train", "dataset=folder", f"dataset.root={root}", "dataset.image_size=16", *TINY,
                    f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"warning: skipped 2 unreadable image file\(s\) under .*images", r.stderr), r.stderr
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["model_id"]["shape"] == [3, 16, 16] and state["model_id"]["num_classes"] == 2


def test_mixed_modes_are_converted_and_16_bit_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from ganrun.config.schema import DatasetConfig
    from ganrun.data import build_dataset

    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (8, 8), (200, 100, 50)).save(root / "rgb.png")
    Image.new("RGBA", (8, 8), (200, 100, 50, 10)).save(root / "rgba.png")
    Image.new("L", (8, 8), 77).save(root / "gray.png")
    Image.new("P", (8, 8), 3).save(root / "palette.png")
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(root / "cmyk.jpg")
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(root / "wide.png")  # 16-bit grayscale
    ds = build_dataset(DatasetConfig(name="folder", root=str(root), image_size=None))
    assert ds.spec.shape == (3, 8, 8) and ds.spec.size == 6 and not ds.notes
    gray = build_dataset(DatasetConfig(name="folder", root=str(root), image_size=None, channels=1))
    assert gray.spec.shape == (1, 8, 8)
    files = sorted(p.name for p in root.iterdir())
    wide = gray.data[files.index("wide.png")]
    assert int(wide.max()) == 40000 >> 8  # 156, not 255
