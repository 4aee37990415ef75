"""`ganrun export` through the CLI, for every registered model family, conditional and not.

Each family trains one step at tiny widths (through the fork server, so torch is imported once),
then is exported in every format; the files are read back by their own runtimes (onnxruntime,
torch.jit.load, torch.load(weights_only=True)) at a batch size the export's parity check does not
use, and compared with the generator ganrun eval/sample would rebuild from the checkpoint (the EMA
one, in eval mode).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.cli_fork import ForkServer
from tests.conftest import ROOT, make_idx_dataset, subprocess_env

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from ganrun.models import MODELS  # noqa: E402
from ganrun.models.export import FORMATS  # noqa: E402

WIDTH_KEYS = ("ngf", "ndf")  # conv widths: tiny so the exports stay fast
CASES = [(name, cond) for name in MODELS.names() for cond in (False, True)]
PARAMS = [pytest.param(n, c, id=f"{n}-{'cond' if c else 'uncond'}") for n, c in CASES]  # all in CI (issue: every family, conditional and not)


env = subprocess_env  # the environment of the `python -m ganrun` these tests start


@pytest.fixture(scope="module")
def server():
    server = ForkServer(env(), preload=("tests.export_warmup",))
    yield server
    server.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("fashion"), n_train=64, n_test=16)


def tiny(name: str) -> list[str]:
    """Overrides that shrink family `name` to a few thousand parameters, read off its own config."""
    from ganrun.config.compose import compose

    model = compose("train", [f"model={name}"]).model
    return [f"model.{k}=8" for k in WIDTH_KEYS if k in model]


def train_one_step(server, base: Path, data: Path, name: str, conditional: bool, extra=()) -> Path:
    run = base / "run"
    r = server.run(["train", f"model={name}", f"model.conditional={str(conditional).lower()}", *tiny(name),
                    "model.latent_dim=16", f"dataset.root={data}", "dataset.image_size=32", "device=cpu",
                    "trainer.max_steps=1", "trainer.batch_size=8", "trainer.n_critic=1", "trainer.ema_decay=0.5",
                    "logger.print_config=false", "logger.tensorboard=false", "logger.progress=none",
                    *extra, f"hydra.run.dir={run}"], base, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def rebuilt_generator(run: Path):
    """The generator as `ganrun sample`/`eval` rebuild it: G_ema when kept, eval mode, CPU."""
    from ganrun.train.loaded import load_run

    return load_run(run, torch.device("cpu")).G


def run_file(fmt: str, path: Path, z: torch.Tensor, c):
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {"z": z.numpy(), **({"c": c.numpy()} if c is not None else {})}
        assert sorted(i.name for i in session.get_inputs()) == sorted(feeds)
        for value in [*session.get_inputs(), *session.get_outputs()]:
            assert isinstance(value.shape[0], str), f"batch axis of {value.name} is fixed: {value.shape}"
        return torch.from_numpy(session.run(None, feeds)[0])
    if fmt == "torchscript":
        module = torch.jit.load(str(path))
        return module(z) if c is None else module(z, c)
    state = torch.load(path, weights_only=True)  # plain tensors and containers only
    return state


@pytest.mark.parametrize("name, conditional", PARAMS)
def test_every_family_exports_in_every_format(server, data, tmp_path, name, conditional):
    run = train_one_step(server, tmp_path, data, name, conditional)
    G = rebuilt_generator(run)
    assert G.num_classes == (10 if conditional else 0)
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(5, G.latent_dim, generator=gen)  # a batch size the parity check does not use
    c = torch.randint(10, (5,), generator=gen) if conditional else None
    with torch.no_grad():
        expected = G(z, c)
    for fmt in FORMATS.names():
        r = server.run(["export", f"checkpoint={run}", f"format={fmt}"], tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        path = run / "export" / f"generator_0000001{FORMATS.get(fmt).suffix}"
        assert f"wrote {path}" in r.stdout and "parity max abs difference" in r.stdout, r.stdout
        meta = FORMATS.get(fmt).read_metadata(path)
        assert meta["ganrun.generator"] == "G_ema" and meta["ganrun.step"] == "1"
        assert meta["ganrun.layout"] == "NCHW" and meta["ganrun.output_range"] == "[-1, 1]"
        assert meta["ganrun.output"] == "x: float32 (N, 1, 32, 32)"
        assert ("c: int64 (N,)" in meta["ganrun.inputs"]) == conditional
        assert len(json.loads(meta["ganrun.class_names"])) == (10 if conditional else 0)
        got = run_file(fmt, path, z, c)
        if fmt == "state_dict":
            assert got["metadata"] == meta
            assert got["model"]["name"] == name and set(got["G"]) == set(G.state_dict())
            got = FORMATS.get(fmt).load(path)(z, c)  # G rebuilt from the file alone
        assert got.shape == expected.shape
        assert float((got - expected).abs().max()) <= 1e-4, fmt
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_points_export_and_refusals(server, tmp_path):
    """2-D data: unbounded output, (N, 2); an existing file is kept unless overwrite=true; a failed
    parity check fails in one line and leaves no file. The G has a categorical latent code, whose
    erf and lookup export too."""
    run = tmp_path / "ring"
    r = server.run(["train", "dataset=ring8", "dataset.num_points=512", "model.latent_dim=4",
                    "model.latent_components=4", "device=cpu",
                    "trainer.max_steps=1", "trainer.batch_size=16", "logger.print_config=false",
                    "logger.tensorboard=false", "logger.progress=none", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "g.onnx"
    r = server.run(["export", f"checkpoint={run}", f"out={out}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = FORMATS.get("onnx").read_metadata(out)
    assert meta["ganrun.output"] == "x: float32 (N, 2)" and meta["ganrun.output_range"].startswith("unbounded")
    before = out.read_bytes()

    again = server.run(["export", f"checkpoint={run}", f"out={out}"], tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"ganrun: error: {out} already exists; pass overwrite=true to replace it, or out=<another file>"]
    assert out.read_bytes() == before

    strict = server.run(["export", f"checkpoint={run}", f"out={out}", "overwrite=true", "tolerance=1e-30"], tmp_path)
    assert strict.returncode == 2, strict.stderr
    lines = strict.stderr.strip().splitlines()
    assert len(lines) == 1 and "differs from the eager one" in lines[0] and "nothing written" in lines[0], lines
    assert out.read_bytes() == before  # the earlier file stays; the failed one is gone
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".g")) == []

    over = server.run(["export", f"checkpoint={run}", f"out={out}", "overwrite=true", "format=torchscript"], tmp_path)
    assert over.returncode == 0, over.stderr
    assert torch.jit.load(str(out))(torch.zeros(3, 4)).shape == (3, 2)

    bad = server.run(["export", f"checkpoint={run}", "format=tflite"], tmp_path)
    assert bad.returncode == 2 and "unknown export format 'tflite' (choose from: onnx, state_dict, torchscript)" \
        in bad.stderr, bad.stderr
