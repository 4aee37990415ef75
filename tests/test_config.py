"""Every option of every group composes into a valid typed config; bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganrun.config.compose import to_typed
from ganrun.config.schema import GROUPS
from ganrun.errors import UserError
from ganrun.registry import Registry

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_option_composes_and_validates(compose_train, group):
    for option in options(group):
        extra = ["dataset.root=/tmp/x"] if (group, option) == ("dataset", "folder") else []
        cfg = compose_train([f"{group}={option}", *extra])
        typed = to_typed(cfg)
        assert getattr(typed, group) is not None


def test_default_recipe(compose_train):
    c = to_typed(compose_train())
    assert (c.dataset.name, c.model.name, c.loss.name, c.optimizer.name) == ("fashion_mnist", "mlp", "non_saturating", "adam")
    assert c.optimizer.lr == 2e-4 and list(c.optimizer.betas) == [0.5, 0.999]
    assert c.trainer.batch_size == 128


@pytest.mark.parametrize(
    "override, key",
    [
        ("optimizer.lr=-1", "optimizer.lr"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("model.latent_dim=0", "model.latent_dim"),
        ("device.precision=fp8", "device.precision"),
        ("loss.real_label=1.5", "loss.real_label"),
        ("optimizer.betas=[0.5]", "optimizer.betas"),
        ("trainer.compile=magic", "trainer.compile"),
    ],
)
def test_out_of_range_values_name_their_key(compose_train, override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        to_typed(compose_train([override]))


def test_registry_rejects_duplicates_and_lists_names_on_a_miss():
    reg: Registry[int] = Registry("widget")
    reg.register("b")(2)
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(3)
    with pytest.raises(UserError, match=r"unknown widget 'c' \(choose from: a, b\)"):
        reg.get("c")
    assert reg.names() == ["a", "b"] and "a" in reg
