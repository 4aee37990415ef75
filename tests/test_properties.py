"""Property-based hardening tests (Hypothesis): generated bad input through the real entry points.

Each generated case goes through `ganrun.cli.main` in this process (SystemExit caught, stderr
captured; a subprocess per example would take minutes on two cores) or through the real loader,
and must end in exit 0, or exit 2 with one line `ganrun: error: ...` and no traceback; a refused
run leaves nothing in its run dir. Generated:
- config overrides: every numeric field of the typed schema (found by walking its dataclasses, so a
  new field is covered without a line here) set to NaN, ±Inf, huge, negative, zero, small, a wrong
  type; unknown keys with `+` and `++`;
- checkpoint mutations: any field of a real checkpoint (nested state dicts, optimizer groups, RNG
  states, config, spec) replaced by a value of another type or shape, or removed; then loaded, and
  where it loads, sampled from and resumed;
- data files: IDX headers (magic, rank, dims incl. 0 and 2**32-1, data length) and image files
  (formats, modes, sizes, truncation, junk) through the dataset loaders.
The examples are derandomized (the "ganrun" profile in conftest.py). `test_generated_case_counts`
(last in this file) asserts and prints how many distinct cases each group tried.
`test_in_process_matches_the_real_entry` runs a few of them again as `python -m ganrun`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import math
import re
import subprocess
import sys
import traceback
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, settings, strategies as st  # noqa: E402

from tests.conftest import write_idx  # noqa: E402

TRIED: dict[str, set] = {"config": set(), "checkpoint": set(), "idx": set(), "images": set(), "sizes": set(),
                         "checkpoint-cli": set()}  # the last: mutations that passed the schema, run through the CLI
BASE = ["dataset=ring8", "dataset.num_points=64", "device=cpu", "logger.print_config=false", "logger.progress=none",
        "logger.tensorboard=false", "trainer.max_steps=1", "trainer.batch_size=8", "trainer.sample_every=0",
        "trainer.log_every=1", "trainer.checkpoint_every=100"]
ONE_LINE = re.compile(r"ganrun: error: [^\n]+")


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """`ganrun <args>` in this process: (exit code, stdout, stderr); a bug's traceback lands in stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            from ganrun.cli import main

            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - a bug: keep its traceback for the assertion message
            traceback.print_exc(file=err)
            code = 1
    return code, out.getvalue(), err.getvalue()


def assert_clean_outcome(code: int, err: str, context) -> None:
    """Exit 0, or exit 2 with exactly one line and no traceback."""
    assert "Traceback" not in err, (context, err)
    assert code in (0, 2), (context, code, err)
    if code == 2:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and ONE_LINE.fullmatch(lines[0]), (context, err)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only spin against each other on a shared box
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


# -- config overrides ----------------------------------------------------------------------------------

def numeric_keys() -> list[tuple[str, type]]:
    """(dotted key, int or float) for every numeric field of the train schema, found by walking it."""
    from ganrun.config.schema import TrainAppConfig

    found = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            base = args[0]
            if dataclasses.is_dataclass(base):
                walk(base, f"{prefix}{f.name}.")
            elif base in (int, float) or typing.get_origin(base) is list:
                found.append((f"{prefix}{f.name}", base))

    walk(TrainAppConfig, "")
    return [(k, t) for k, t in found if not k.startswith("device.")]  # device: global torch flags, CUDA


KEYS = numeric_keys()
SMALL_INTS = st.integers(-3, 6).map(str)
NASTY = st.sampled_from(["nan", "inf", "-inf", "+inf", "NaN", "-nan", "1e400", "-1e400", "123456789012345678901234",
                         str(2**63), str(-(2**63) - 1), str(2**64), "-1", "0", "-0.0", "1e-320", "lots", "'3'",
                         "[1,2]", "[nan,0.9]", "{a:1}", "true", "null", "''", "0x10", "1_000"])
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr)
VALUES = st.one_of(NASTY, SMALL_INTS, FLOATS, st.floats(-2, 2).map(lambda x: f"{x:.3g}"))
UNKNOWN = st.tuples(st.sampled_from(["+", "++"]),
                    st.sampled_from(["new.key", "trainer.foo", "model.width", "x", "eval.every2", "optimizer.betas2",
                                     "trainer.max_stpes", "loss.gp"]),
                    st.sampled_from(["1", "nan", "a", "[1]"])).map(lambda t: f"{t[0]}{t[1]}={t[2]}")
OVERRIDES = st.lists(st.one_of(st.tuples(st.sampled_from([k for k, _ in KEYS]), VALUES).map(lambda kv: "=".join(kv)),
                               UNKNOWN), min_size=1, max_size=2, unique_by=lambda o: o.split("=")[0].lstrip("+"))
DIVERGED = re.compile(r"became (nan|inf|-inf) ")  # a run that ran and diverged: its refusal comes after steps


@settings(max_examples=60)
@given(overrides=OVERRIDES)
def test_generated_config_overrides_exit_0_or_2_with_one_line(overrides, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cfg")
    run = tmp / "run"
    TRIED["config"].add(tuple(overrides))
    code, _, err = run_cli(["train", *BASE, *overrides, f"hydra.run.dir={run}"])
    assert_clean_outcome(code, err, overrides)
    if any(o.startswith("+") for o in overrides):
        assert code == 2, (overrides, err)  # refused (this or another override's one line)
    if any(re.search(r"=(nan|inf|-inf|\+inf|NaN|-nan|1e400|-1e400)$", o) for o in overrides) and code == 0:
        # accepted only where the field is not numeric at all (a list given as a string is refused)
        pytest.fail(f"a non-finite number was accepted: {overrides}")
    if code == 2 and not DIVERGED.search(err):
        assert not run.exists() or not any(run.rglob("*")), (overrides, sorted(run.rglob("*")))


SIZES = [  # sizes that cannot fit: refused up front, saying what would fit
    (["model.latent_dim=1000000000"], r"model\.latent_dim=1000000000 cannot fit: .* at most model\.latent_dim=\d+"),
    (["model.latent_dim=4000000000000"], r"cannot fit"),
    (["dataset.num_points=1000000000000"], r"dataset\.num_points=1000000000000 cannot fit: .* at most dataset\.num_points=\d+ would fit"),
    (["trainer.n_critic=1000000000000"], r"trainer\.n_critic=1000000000000 cannot fit"),
    (["seed=123456789012345678901234"], r"seed must be an integer in \[0, 9223372036854775806\]"),
    (["trainer.batch_size=1"], r"trainer\.batch_size=1 cannot train model=mlp: its G has BatchNorm layers"),
    (["trainer.epochs=nan", "trainer.max_steps=null"], r"trainer\.epochs must be a finite number, got nan"),
    (["++trainer.foo=1"], r"unknown key 'trainer\.foo'"),
]


@pytest.mark.parametrize("overrides,message", SIZES, ids=[s[0][0] for s in SIZES])
def test_sizes_that_cannot_fit_are_refused_up_front(overrides, message, tmp_path):
    TRIED["sizes"].add(tuple(overrides))
    code, _, err = run_cli(["train", *BASE, *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    assert_clean_outcome(code, err, overrides)
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*"))


def test_image_sizes_that_cannot_fit(tmp_path, idx_root):
    fits = r"cannot fit: .* at most {} would fit"
    for args, key in ((["trainer.num_sample_images=1000000000"], "trainer.num_sample_images"),
                      (["dataset.image_size=1000000"], "dataset.image_size")):
        TRIED["sizes"].add(tuple(args))
        code, _, err = run_cli(["train", *BASE[1:], "dataset=fashion_mnist", f"dataset.root={idx_root}", *args,
                                f"hydra.run.dir={tmp_path / key}"])
        assert_clean_outcome(code, err, args)
        assert code == 2 and re.search(fits.format(re.escape(key) + r"=\d+"), err), err


# -- checkpoint mutations ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ckpt")
    code, _, err = run_cli(["train", *BASE, "trainer.max_steps=2", "trainer.ema_decay=0.9", f"hydra.run.dir={tmp / 'run'}"])
    assert code == 0, err
    return torch.load(tmp / "run" / "checkpoints" / "last.pt", weights_only=True)


def paths_of(value, prefix=()) -> list[tuple]:
    """Every place in a nested checkpoint: dict keys and list indices, inner nodes included."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(value, (list, tuple)) and len(value) < 50:
        for i, v in enumerate(value):
            out += paths_of(v, (*prefix, i))
    return out


REMOVE = object()
REPLACEMENTS = st.one_of(
    st.sampled_from([REMOVE, None, "a string", "", -1, 0, 2**70, -(2**70), 1.5, math.nan, math.inf, True, [], {},
                     [1, 2, 3], {"x": 1}, (0.9,), b"bytes"]),
    st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 4), max_size=3).map(tuple),
              st.sampled_from([torch.float32, torch.int64, torch.uint8, torch.bool, torch.float16])),
    st.builds(lambda n: torch.full((n,), math.nan), st.integers(1, 3)),
    st.builds(lambda n: torch.randint(0, 255, (n,), dtype=torch.uint8), st.sampled_from([0, 3, 5055, 5057])),
)


def mutated(state: dict, path: tuple, value) -> dict:
    import copy

    state = copy.copy(state)
    node, parents = state, []
    for key in path[:-1]:  # copy the containers on the way down, so the good checkpoint stays good
        child = node[key]
        child = dict(child) if isinstance(child, dict) else list(child) if isinstance(child, (list, tuple)) else child
        node[key] = child
        node = child
    if value is REMOVE:
        if isinstance(node, dict):
            node.pop(path[-1])
        else:
            del node[path[-1]]
    else:
        node[path[-1]] = value
    return state


def describe(path, value) -> str:
    shown = "REMOVE" if value is REMOVE else (f"tensor{list(value.shape)}:{value.dtype}"
                                             if isinstance(value, torch.Tensor) else repr(value))
    return f"{'/'.join(map(str, path))}={shown}"


@settings(max_examples=90)
@given(data=st.data())
def test_generated_checkpoint_mutations_are_refused_in_one_line_or_work(data, good_checkpoint, tmp_path_factory):
    from ganrun.errors import UserError
    from ganrun.train.checkpoint import load_checkpoint

    path = data.draw(st.sampled_from(paths_of(good_checkpoint)), label="field")
    value = data.draw(REPLACEMENTS, label="value")
    TRIED["checkpoint"].add(describe(path, value))
    tmp = tmp_path_factory.mktemp("mut")
    file = tmp / "mutated.pt"
    torch.save(mutated(good_checkpoint, path, value), file)
    try:
        load_checkpoint(file)
    except UserError as exc:  # refused by the one schema: every command reads checkpoints through it
        assert "\n" not in str(exc) and str(file) in str(exc), str(exc)
        return
    # it passed the schema: the real entries, sample and resume, must end in exit 0 or one line
    TRIED["checkpoint-cli"].add(describe(path, value))
    before = file.read_bytes()
    code, _, err = run_cli(["sample", f"checkpoint={file}", "n=4", f"out={tmp / 'grid.png'}", "device=cpu"])
    assert_clean_outcome(code, err, describe(path, value))
    if code == 0:  # it loaded: training on from it must work too, or be refused in one line
        code, _, err = run_cli(["train", f"trainer.resume={file}", f"trainer.max_steps={good_checkpoint['step'] + 1}",
                                "logger.progress=none", "logger.tensorboard=false", f"hydra.run.dir={tmp / 'run'}"])
        assert_clean_outcome(code, err, describe(path, value))
    assert file.read_bytes() == before  # the checkpoint read is never changed


# -- data files ------------------------------------------------------------------------------------------

DIMS = st.one_of(st.integers(0, 6), st.sampled_from([28, 2**16, 2**31, 2**32 - 1]))


@settings(max_examples=110)
@given(magic=st.sampled_from([0x803, 0x803, 0x803, 0x801, 0x808, 0x0C03, 0xFFFFFFFF]),
       dims=st.one_of(st.lists(DIMS, min_size=3, max_size=3), st.lists(DIMS, min_size=3, max_size=3),
                      st.lists(DIMS, min_size=0, max_size=4)),
       slack=st.sampled_from([0, 0, 0, 0, -1, 1, -7, 100]),
       gz=st.booleans(), labels=st.sampled_from(["match", "match", "fewer", "big-label"]))
@example(magic=0x803, dims=[5, 0, 0], slack=0, gz=False, labels="match")  # the red team's (N, 0, 0)
@example(magic=0x803, dims=[4, 28, 0], slack=0, gz=True, labels="match")
def test_generated_idx_files_load_or_are_refused_in_one_line(magic, dims, slack, gz, labels, tmp_path_factory):
    from ganrun.config.schema import DatasetConfig
    from ganrun.data import build_dataset
    from ganrun.errors import UserError

    TRIED["idx"].add((magic, tuple(dims), slack, gz, labels))
    root = tmp_path_factory.mktemp("idx")
    n = dims[0] if dims else 0
    size = math.prod(dims) if dims else 0
    body = bytes(min(max(size + slack, 0), 200_000))  # a header may promise far more than is there
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    raw = header + body
    name = root / ("train-images-idx3-ubyte.gz" if gz else "train-images-idx3-ubyte")
    name.write_bytes(gzip.compress(raw) if gz else raw)
    count = min(n, 10_000) if labels == "match" else 1
    write_idx(root / "train-labels-idx1-ubyte", np.full(count, 11 if labels == "big-label" else 3, np.uint8))
    try:
        ds = build_dataset(DatasetConfig(name="fashion_mnist", root=str(root)))
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    # accepted: a consistent, non-degenerate set
    assert ds.data.dtype == torch.uint8 and ds.data.dim() == 4 and ds.data.shape[1] == 1
    assert all(s > 0 for s in ds.data.shape[2:]) and len(ds.labels) == len(ds.data) == ds.spec.size


def image_bytes(kind: str, size: tuple[int, int], mode: str, cut: float) -> bytes:
    from PIL import Image

    if kind == "junk":
        return bytes(range(256))[: max(1, int(256 * cut))]
    buf = io.BytesIO()
    fmt = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF"}[kind]
    if fmt == "JPEG" and mode not in ("L", "RGB", "CMYK"):
        mode = "RGB"
    if fmt == "GIF" and mode not in ("L", "P"):
        mode = "P"
    if fmt in ("PNG", "BMP") and mode == "CMYK":
        mode = "RGB"
    if fmt == "BMP" and mode in ("I;16", "LA", "RGBA"):
        mode = "RGB"
    arr = (np.arange(size[0] * size[1]) % 251).reshape(size[1], size[0]).astype(np.uint8)
    img = Image.fromarray(arr, "L").convert(mode)
    img.save(buf, fmt)
    data = buf.getvalue()
    return data if cut >= 1 else data[: int(len(data) * cut)]


IMAGE = st.tuples(st.sampled_from(["png", "png", "jpg", "bmp", "gif", "junk"]),
                  st.tuples(st.integers(1, 24), st.integers(1, 24)),
                  st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "CMYK", "LA"]),
                  st.sampled_from([1.0, 1.0, 1.0, 0.5, 0.1]))


@settings(max_examples=70)
@given(files=st.lists(IMAGE, min_size=1, max_size=4), image_size=st.sampled_from([None, 8, 1]),
       channels=st.sampled_from([None, 1, 3]))
def test_generated_image_folders_load_or_are_refused_in_one_line(files, image_size, channels, tmp_path_factory):
    from ganrun.config.schema import DatasetConfig
    from ganrun.data import build_dataset
    from ganrun.errors import UserError

    TRIED["images"].add((tuple(files), image_size, channels))
    root = tmp_path_factory.mktemp("img")
    for i, (kind, size, mode, cut) in enumerate(files):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        (folder / f"{i}.{'png' if kind == 'junk' else kind}").write_bytes(image_bytes(kind, size, mode, cut))
    try:
        ds = build_dataset(DatasetConfig(name="folder", root=str(root), image_size=image_size, channels=channels))
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    c, h, w = ds.spec.shape
    assert ds.data.dtype == torch.uint8 and tuple(ds.data.shape[1:]) == (c, h, w) and h > 0 and w > 0
    assert c in ((channels,) if channels else (1, 3)) and (image_size is None or h == w == image_size)


# -- the real entry point, and the counts ------------------------------------------------------------------

def test_in_process_matches_the_real_entry(tmp_path):
    """Some generated kinds of case as `python -m ganrun`: the same exit code and the same line."""
    from tests.test_faults import env

    for overrides in (["optimizer.lr=nan"], ["++trainer.foo=1"], ["seed=123456789012345678901234"]):
        args = ["train", *BASE, *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
        direct = subprocess.run([sys.executable, "-m", "ganrun", *args], cwd=tmp_path, env=env(),
                                capture_output=True, text=True, timeout=300)
        code, out, err = run_cli(args)
        assert (direct.returncode, direct.stderr) == (code, err) and code == 2, (direct.stderr, err)
        assert not (tmp_path / "run").exists()


def test_generated_case_counts():
    """How many distinct generated cases this file tried (needs the tests above to have run in this session)."""
    counts = {k: len(v) for k, v in TRIED.items()}
    total = sum(n for k, n in counts.items() if k != "checkpoint-cli")
    print(f"\ndistinct generated cases: {counts}, total {total}")
    if not all(counts[k] for k in ("config", "checkpoint", "idx", "images")):
        pytest.skip(f"run the whole file for the counts ({counts})")
    assert total >= 300, counts
