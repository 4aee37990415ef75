"""Outputs that never clobber (issue 14, class 7): `ganrun sample out=` and `ganrun eval` results.

Generated `out=` targets (extensions, directories, /dev/full, dangling links, paths under a file,
existing files with and without overwrite=true) through `ganrun.cli.main` in-process: exit 0 with
a readable image at the target, or exit 2 with one line; an existing file's bytes change only with
overwrite=true. Then the default names: another seed, another n, another checkpoint or another
sample count gives another file, and the same one again is refused without overwrite=true.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.test_properties import BASE, TRIED, assert_clean_outcome, run_cli

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("out")
    code, _, err = run_cli(["train", *BASE, "trainer.max_steps=2", "trainer.checkpoint_every=1", "trainer.keep_last=2",
                            f"hydra.run.dir={tmp / 'run'}"])
    assert code == 0, err
    return tmp / "run"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def make_target(tmp: Path, kind: str, suffix: str) -> str:
    target = tmp / f"grid{suffix}"
    if kind == "existing":
        target.write_bytes(b"an earlier result\n")
    elif kind == "directory":
        target.mkdir()
    elif kind == "dangling-link":
        target.symlink_to(tmp / "nowhere")
    elif kind == "under-a-file":
        (tmp / "afile").write_text("x")
        target = tmp / "afile" / f"grid{suffix}"
    elif kind == "device":
        return "/dev/full"
    return str(target)


@settings(max_examples=30)
@given(kind=st.sampled_from(["new", "existing", "directory", "dangling-link", "under-a-file", "device"]),
       suffix=st.sampled_from([".png", ".PNG", ".jpg", ".jpeg", ".webp", ".bmp", "", ".txt", ".png.gz", ".pt"]),
       overwrite=st.booleans())
def test_generated_sample_targets(kind, suffix, overwrite, run, tmp_path_factory):
    TRIED.setdefault("outputs", set()).add((kind, suffix, overwrite))
    tmp = tmp_path_factory.mktemp("target")
    out = make_target(tmp, kind, suffix)
    before = snapshot(tmp)
    code, _, err = run_cli(["sample", f"checkpoint={run}", "n=4", f"out={out}", "device=cpu",
                            f"overwrite={str(overwrite).lower()}"])
    assert_clean_outcome(code, err, (kind, suffix, overwrite))
    if code == 0:
        from PIL import Image

        assert kind in ("new", "existing") and suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp")
        assert kind == "new" or overwrite, "an existing file was replaced without overwrite=true"
        Image.open(out).verify()
        assert not [p for p in Path(out).parent.iterdir() if p.name.endswith(".tmp")]
    else:
        assert snapshot(tmp) == before, "a refused sample changed files"
        if kind == "device":
            assert Path("/dev/full").is_char_device()


def test_default_sample_names_differ_by_seed_and_are_never_replaced(run):
    samples = run / "samples"
    for seed in (0, 1):
        code, _, err = run_cli(["sample", f"checkpoint={run}", "n=4", f"seed={seed}", "device=cpu"])
        assert code == 0, err
    names = sorted(p.name for p in samples.glob("sample_*"))
    assert names == ["sample_0000002_seed0_n4.png", "sample_0000002_seed1_n4.png"], names
    before = snapshot(samples)
    code, _, err = run_cli(["sample", f"checkpoint={run}", "n=4", "seed=1", "device=cpu"])
    assert code == 2 and err.strip() == (f"ganrun: error: {samples / 'sample_0000002_seed1_n4.png'} already exists; "
                                         "pass overwrite=true to replace it, or choose another out"), err
    assert snapshot(samples) == before


def test_eval_results_are_named_after_checkpoint_step_and_protocol(run):
    folder = run / "checkpoints"
    for ckpt in ("last.pt", "step_0000001.pt"):
        code, _, err = run_cli(["eval", f"checkpoint={folder / ckpt}", "device=cpu", "logger.progress=none",
                                "logger.tensorboard=false"])
        assert code == 0, err
    names = sorted(p.name for p in folder.glob("metrics_*.json"))
    assert names == ["metrics_last_0000002_mixture_seed0.json", "metrics_step_0000001_0000001_mixture_seed0.json"]
    before = snapshot(folder)
    code, _, err = run_cli(["eval", f"checkpoint={run}", "device=cpu", "logger.progress=none", "logger.tensorboard=false"])
    assert code == 2 and "metrics_last_0000002_mixture_seed0.json already exists; pass overwrite=true" in err, err
    assert snapshot(folder) == before
    code, _, err = run_cli(["eval", f"checkpoint={run}", "device=cpu", "logger.progress=none", "logger.tensorboard=false",
                            "overwrite=true"])
    assert code == 0, err
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert torch.load(folder / "last.pt", weights_only=True)["step"] == 2  # the checkpoints themselves untouched
