"""Properties every registered model family has, parametrized over the registry: a new family file is
covered here without editing this one.

Each family has a YAML naming its own schema, composes and validates, builds (G, D) with the G/D
contracts for every kind of data it accepts (and refuses the others with one line naming
`model=<name>`), trains one CPU step through `train()`, and its parameter count at the defaults is
in README's model table.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST

from ganrun.commands.train import train
from ganrun.config.compose import to_typed
from ganrun.config.schema import ModelConfig
from ganrun.data import DataSpec
from ganrun.errors import UserError
from ganrun.models import MODELS, build_models, count_parameters

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = MODELS.names()

# Kinds of data a family may accept: 2-D points, and square or odd-sized images of 1 or 3 channels.
SPECS = [
    DataSpec(name="ring8", kind="points", shape=(2,), size=100),
    *(DataSpec(name=f"img{c}x{s}", kind="image", shape=(c, s, s), num_classes=10, size=100)
      for s in (28, 32, 64) for c in (1, 3)),
]


def family_config(compose_train, name: str, *overrides: str):
    return to_typed(compose_train([f"model={name}", *overrides]))


def test_every_yaml_is_a_registered_family_and_back():
    yamls = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))
    assert yamls == FAMILIES


@pytest.mark.parametrize("name", FAMILIES)
def test_family_yaml_names_its_schema(name, compose_train):
    text = (ROOT / "configs" / "model" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n"), "one package style for every family"
    assert f"  - /schema_model_{name}@model\n" in text
    schema = MODELS.get(name).schema
    assert issubclass(schema, ModelConfig)
    c = family_config(compose_train, name)
    assert type(c.model) is schema and c.model.name == name


@pytest.mark.parametrize("name", FAMILIES)
def test_family_builds_for_the_data_it_supports(name, compose_train):
    cfg = family_config(compose_train, name).model
    accepted = []
    for spec in SPECS:
        try:
            G, D = build_models(cfg, spec)
        except UserError as exc:
            message = str(exc)
            assert "\n" not in message and f"model={cfg.name}" in message, message
            continue
        accepted.append(spec.name)
        G.eval(), D.eval()
        c = torch.arange(2) % spec.num_classes if cfg.conditional else None
        with torch.no_grad():
            x = G(torch.randn(2, cfg.latent_dim), c)
            logits, features = D.forward_features(x, c)
        assert x.shape == (2, *spec.shape) and torch.isfinite(x).all()
        assert logits.shape == (2,) and features.ndim == 2 and features.shape[0] == 2
        assert G.num_classes == D.num_classes == (spec.num_classes if cfg.conditional else 0)
    assert accepted, f"model={name} builds for none of {[s.name for s in SPECS]}"


@pytest.mark.parametrize("name", FAMILIES)
def test_family_trains_one_cpu_step(name, compose_train, idx_root, tmp_path):
    cfg = compose_train([f"model={name}", *FAST, f"dataset.root={idx_root}", "logger.progress=none",
                         "trainer.max_steps=1", "trainer.batch_size=4", "trainer.n_critic=1",
                         "trainer.num_sample_images=4", "dataset.image_size=32"])
    result = train(cfg, run_dir=tmp_path / "run")
    assert int(result["step"]) == 1
    assert math.isfinite(result["loss/D"]) and math.isfinite(result["loss/G"])
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def readme_row(name: str) -> str:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}`")]
    assert len(rows) == 1, f"README's model table has {len(rows)} rows for `{name}`"
    return rows[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_parameter_count_at_the_defaults_is_in_the_readme(name, compose_train):
    """The defaults: the family's YAML on the default dataset (28×28 grayscale, 10 classes), resized
    to the size the YAML asks for."""
    c = family_config(compose_train, name)
    size = c.dataset.image_size or 28
    spec = DataSpec(name=c.dataset.name, kind="image", shape=(1, size, size), num_classes=10, size=100)
    G, D = build_models(c.model, spec)
    counts = f"{count_parameters(G):,} / {count_parameters(D):,}"
    assert counts in readme_row(name), f"model={name} at {size}×{size}×1 has {counts} parameters (G / D)"


def test_readme_table_rows_are_registered_families():
    table = (ROOT / "README.md").read_text().split("### Model families", 1)[1].split("\n\n", 2)[1]
    names = re.findall(r"^\| `(\w+)`", table, flags=re.M)
    assert sorted(names) == FAMILIES


def test_checkpoint_rebuilds_with_the_family_dataclass(compose_train, tmp_path):
    """eval/sample rebuild G from the checkpoint's model section, typed by its family's own schema.

    Checkpoints of the earlier flat schema carry every family's keys; those the family never read
    are dropped. Any other key that the family does not have is refused in one line."""
    from ganrun.train.loaded import load_run
    from ganrun.models.mlp import MLPConfig
    from ganrun.train.checkpoint import load_checkpoint, save_checkpoint

    cfg = compose_train(["dataset=ring8", *FAST, "logger.progress=none", "trainer.max_steps=2",
                         "trainer.batch_size=16", "model.dropout=0.2"])
    train(cfg, run_dir=tmp_path / "run")
    run = load_run(tmp_path / "run", torch.device("cpu"))
    assert type(run.model_cfg) is MLPConfig and run.model_cfg.dropout == 0.2

    state = load_checkpoint(tmp_path / "run")
    flat = dict(ngf=64, ndf=64, image_size=None, norm="batch")  # the old flat schema's conv keys
    state["config"]["model"].update(flat)
    for added in ("path", "skipped"):  # added by load_checkpoint, not stored fields
        state.pop(added, None)
    save_checkpoint(tmp_path / "flat.pt", state)
    assert load_run(tmp_path / "flat.pt", torch.device("cpu")).model_cfg == run.model_cfg

    state["config"]["model"]["widht"] = 3
    save_checkpoint(tmp_path / "typo.pt", state)
    with pytest.raises(UserError, match=r"^the checkpoint's model config does not fit this ganrun: Key 'widht' "
                                        r"not in 'MLPConfig'$"):
        load_run(tmp_path / "typo.pt", torch.device("cpu"))
