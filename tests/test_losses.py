"""Objectives and regularizers against their formulas on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganrun.losses import LossConfig
from ganrun.errors import UserError
from ganrun.losses import OBJECTIVES, build_loss, check_discriminator, gradient_penalty, r1_penalty

REAL = torch.tensor([2.0, -1.0, 0.5])  # D's logits on three reals
FAKE = torch.tensor([-3.0, 0.0, 1.0])  # and on three fakes


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce(logit: float, target: float) -> float:
    p = sigmoid(logit)
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


# -- objectives on hand-computed logits --------------------------------------------------------

def test_registry_has_the_five_objectives():
    assert OBJECTIVES.names() == ["hinge", "least_squares", "minimax", "non_saturating", "wasserstein"]
    with pytest.raises(UserError, match=r"unknown loss 'hing' \(choose from: hinge, least_squares"):
        OBJECTIVES.get("hing")


@pytest.mark.parametrize("name", ["minimax", "non_saturating"])
def test_bce_d_loss(name):
    d = OBJECTIVES.get(name).d_loss(REAL, FAKE, 1.0, 0.0)
    expected = mean(softplus(-r) for r in REAL.tolist()) + mean(softplus(f) for f in FAKE.tolist())
    assert d.item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_changes_d_loss_as_the_formula_says():
    obj = OBJECTIVES.get("non_saturating")
    one_sided = obj.d_loss(REAL, FAKE, 0.9, 0.0).item()
    two_sided = obj.d_loss(REAL, FAKE, 0.98, 0.02).item()
    assert one_sided == pytest.approx(mean(bce(r, 0.9) for r in REAL.tolist())
                                      + mean(bce(f, 0.0) for f in FAKE.tolist()), rel=1e-6)
    assert two_sided == pytest.approx(mean(bce(r, 0.98) for r in REAL.tolist())
                                      + mean(bce(f, 0.02) for f in FAKE.tolist()), rel=1e-6)
    # smoothing moves the optimum: a confident real logit (2.0) is now penalised for overshooting
    r = torch.tensor([10.0], requires_grad=True)
    obj.d_loss(r, torch.tensor([-10.0]), 0.9, 0.0).backward()
    assert r.grad.item() == pytest.approx(sigmoid(10.0) - 0.9, rel=1e-5)  # > 0: pushes the logit down


def test_g_losses():
    fake = FAKE.tolist()
    assert OBJECTIVES.get("non_saturating").g_loss(FAKE).item() == pytest.approx(mean(softplus(-f) for f in fake))
    assert OBJECTIVES.get("minimax").g_loss(FAKE).item() == pytest.approx(
        mean(math.log(1 - sigmoid(f)) for f in fake), rel=1e-6)
    assert OBJECTIVES.get("hinge").g_loss(FAKE).item() == pytest.approx(-mean(fake))
    assert OBJECTIVES.get("wasserstein").g_loss(FAKE).item() == pytest.approx(-mean(fake))
    assert OBJECTIVES.get("least_squares").g_loss(FAKE).item() == pytest.approx(
        0.5 * mean((f - 1) ** 2 for f in fake))


def test_hinge_d_loss():
    d = OBJECTIVES.get("hinge").d_loss(REAL, FAKE, 1.0, 0.0).item()
    expected = mean(max(0.0, 1 - r) for r in REAL.tolist()) + mean(max(0.0, 1 + f) for f in FAKE.tolist())
    assert d == pytest.approx(expected)  # (0 + 2 + 0.5)/3 + (0 + 1 + 2)/3


def test_least_squares_d_loss_uses_targets():
    obj = OBJECTIVES.get("least_squares")
    for b, a in ((1.0, 0.0), (0.9, 0.1)):
        expected = 0.5 * (mean((r - b) ** 2 for r in REAL.tolist()) + mean((f - a) ** 2 for f in FAKE.tolist()))
        assert obj.d_loss(REAL, FAKE, b, a).item() == pytest.approx(expected, rel=1e-6)


def test_wasserstein_d_loss():
    assert OBJECTIVES.get("wasserstein").d_loss(REAL, FAKE, 1.0, 0.0).item() == pytest.approx(
        mean(FAKE.tolist()) - mean(REAL.tolist()))


def test_saturating_vs_non_saturating_gradient_when_d_rejects_the_fakes():
    """At D(G(z)) ≈ 0 (a very negative logit) log(1 - D) gives G almost no gradient; -log D a large one."""
    logit = torch.tensor([-15.0], requires_grad=True)
    (g_minimax,) = torch.autograd.grad(OBJECTIVES.get("minimax").g_loss(logit), logit)
    (g_ns,) = torch.autograd.grad(OBJECTIVES.get("non_saturating").g_loss(logit), logit)
    assert abs(g_minimax.item()) == pytest.approx(sigmoid(-15.0), rel=1e-4)  # -σ(x) ≈ -3e-7
    assert abs(g_minimax.item()) < 1e-6
    assert g_ns.item() == pytest.approx(-(1 - sigmoid(-15.0)), rel=1e-6)  # -(1 - σ(x)) ≈ -1
    assert abs(g_ns.item()) / abs(g_minimax.item()) > 1e6


# -- penalties ---------------------------------------------------------------------------------

class LinearCritic(nn.Module):
    """C(x) = w·x (plus a bias, which the gradient never sees)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor, c=None) -> torch.Tensor:
        return x.flatten(1) @ self.w.flatten() + 0.3


@pytest.mark.parametrize("w", [torch.tensor([3.0, 4.0]), torch.full((1, 4, 4), 0.1), torch.tensor([0.6, 0.8])])
def test_gradient_penalty_on_linear_critic(w):
    torch.manual_seed(0)
    D = LinearCritic(w)
    real, fake = torch.randn(8, *w.shape), torch.randn(8, *w.shape)
    gp = gradient_penalty(D, real, fake)
    norm = w.flatten().norm().item()
    assert gp.shape == (8,)
    assert torch.allclose(gp, torch.full((8,), (norm - 1) ** 2), atol=1e-6)
    gp.mean().backward()  # double backward reaches the critic's weights: d/dw (‖w‖-1)² = 2(‖w‖-1) w/‖w‖
    assert torch.allclose(D.w.grad, 2 * (norm - 1) * w / norm, atol=1e-5)


def test_r1_on_linear_critic():
    w = torch.tensor([1.0, -2.0, 2.0])
    D = LinearCritic(w)
    r1 = r1_penalty(D, torch.randn(5, 3))
    assert torch.allclose(r1, torch.full((5,), 9.0), atol=1e-6)  # ‖w‖² = 1 + 4 + 4
    r1.mean().backward()
    assert torch.allclose(D.w.grad, 2 * w, atol=1e-5)


def test_gradient_penalty_interpolates_between_real_and_fake():
    """On C(x) = ½‖x‖² the gradient at x̂ is x̂ itself, so the penalty reveals where x̂ was taken."""

    class Quadratic(nn.Module):
        def forward(self, x, c=None):
            return 0.5 * x.square().flatten(1).sum(1)

    torch.manual_seed(1)
    real, fake = torch.full((256, 1), 3.0), torch.full((256, 1), 1.0)
    gp = gradient_penalty(Quadratic(), real, fake)
    x_hat = gp.sqrt() + 1  # ‖x̂‖ - 1 = sqrt(gp) since x̂ ∈ [1, 3]
    assert x_hat.min() >= 1 - 1e-5 and x_hat.max() <= 3 + 1e-5
    assert x_hat.mean().item() == pytest.approx(2.0, abs=0.15)  # ε ~ U(0, 1)


# -- config checks -----------------------------------------------------------------------------

def test_build_loss_carries_the_options():
    spec = build_loss(LossConfig(name="least_squares", real_label=0.9, fake_label=0.1, gp_weight=2.0,
                                 r1_gamma=5.0, r1_every=4, instance_noise=0.1, feature_matching=1.0))
    assert spec.objective.name == "least_squares"
    assert spec.targets == (0.9, 0.1)
    assert (spec.get("gradient_penalty").weight, spec.get("r1").gamma, spec.get("r1").every) == (2.0, 5.0, 4)
    assert (spec.get("instance_noise").std, spec.get("feature_matching").weight) == (0.1, 1.0)
    assert [t.name for t in spec.lazy()] == ["r1"]
    assert {t.acts_in for t in spec.terms} == {"D_input", "targets", "D", "G"}


def test_regularizers_are_off_at_their_defaults():
    spec = build_loss(LossConfig(name="non_saturating"))
    assert spec.terms == () and spec.targets == (1.0, 0.0) and not spec.double_backward


def test_every_regularizer_declares_its_keys_place_and_default(compose_train):
    """Property: each declared regularizer's keys are in the loss schema, typed and off by default,
    with the same default in the one shared YAML; the schema is the objective plus those keys only."""
    import dataclasses
    from pathlib import Path

    import yaml

    from ganrun.losses import REGULARIZERS
    from ganrun.losses.regularizers import PLACES

    def default(f):  # a list key (loss.diffaugment) has a default factory
        return f.default_factory() if f.default is dataclasses.MISSING else f.default

    defaults = yaml.safe_load((Path(__file__).parents[1] / "configs/loss/regularizers/default.yaml").read_text())
    schema = {f.name: f for f in dataclasses.fields(LossConfig)}
    assert schema.pop("name").type in ("str", str)
    declared = set()
    for name in REGULARIZERS.names():
        reg = REGULARIZERS.get(name)
        keys = reg.key_names()
        assert reg.acts_in in PLACES and keys and set(keys) <= set(schema)
        assert not declared & set(keys)  # one owner per key
        declared |= set(keys)
        for f in dataclasses.fields(reg.Keys):
            assert defaults[f.name] == default(f) == default(schema[f.name])
        assert reg.from_config(LossConfig(name="non_saturating")) is None  # off at its defaults
    assert declared == set(schema) == set(defaults)
    cfg = compose_train(["loss=hinge"])
    assert {k: cfg.loss[k] for k in defaults} == defaults  # the loss options inherit them


SHRINK = """
from dataclasses import dataclass

from ganrun.losses.regularizers import REGULARIZERS, Regularizer


@REGULARIZERS.register("shrink")
@dataclass(frozen=True)
class Shrink(Regularizer):
    weight: float

    @dataclass
    class Keys:
        shrink_weight: float = 0.0  # a made-up D-input term

    acts_in = "D_input"

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.shrink_weight) if cfg.shrink_weight > 0 else None

    def transform(self, x, draws=None):
        return x * (1 - self.weight)
"""


def test_a_new_regularizer_is_one_module_and_one_yaml_line(tmp_path):
    """In a copy of the project, one new module under losses/regularizers/ and its default in the
    shared YAML make `loss.shrink_weight` a typed, validated key of every loss; nothing else edited."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    shutil.copytree(root / "ganrun", tmp_path / "ganrun", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "configs", tmp_path / "configs")
    (tmp_path / "ganrun/losses/regularizers/shrink.py").write_text(SHRINK)
    with open(tmp_path / "configs/loss/regularizers/default.yaml", "a") as f:
        f.write("shrink_weight: 0.0   # the new term; 0: off\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def ganrun(*args):
        return subprocess.run([sys.executable, "-m", "ganrun", "train", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    shown = ganrun("--cfg", "job", "loss=hinge", "loss.shrink_weight=0.25")
    assert shown.returncode == 0, shown.stderr
    assert "shrink_weight: 0.25" in shown.stdout
    refused = ganrun("dataset=ring8", "loss.shrink_weight=-1", f"hydra.run.dir={tmp_path / 'run'}")
    assert refused.returncode == 2 and "loss.shrink_weight" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "run").exists()


def test_objectives_say_whether_they_need_a_lipschitz_critic():
    assert [n for n in OBJECTIVES.names() if OBJECTIVES.get(n).needs_lipschitz] == ["wasserstein"]
    mlp = nn.Sequential(nn.Linear(2, 1))
    with pytest.raises(UserError, match=r"loss=wasserstein needs a Lipschitz critic"):
        check_discriminator(build_loss(LossConfig(name="wasserstein")), mlp)
    check_discriminator(build_loss(LossConfig(name="wasserstein", r1_gamma=1.0)), mlp)
    check_discriminator(build_loss(LossConfig(name="wasserstein")),
                        nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(2, 1))))


def test_d_statistics_mean_what_each_objective_means():
    bce = OBJECTIVES.get("non_saturating").d_stats(REAL, FAKE)
    assert bce["D/D(x)"].item() == pytest.approx(mean(map(sigmoid, REAL.tolist())))
    assert bce["D/acc_fake"].item() == pytest.approx(1 / 3)  # only -3 is called fake
    critic = OBJECTIVES.get("wasserstein").d_stats(REAL, FAKE)
    assert critic["D/critic_real"].item() == pytest.approx(mean(REAL.tolist()))
    assert critic["D/wasserstein"].item() == pytest.approx(mean(REAL.tolist()) - mean(FAKE.tolist()))
    hinge = OBJECTIVES.get("hinge").d_stats(REAL, FAKE)
    assert hinge["D/real_in_margin"].item() == pytest.approx(2 / 3)  # -1 and 0.5 are below the margin 1
    assert hinge["D/fake_in_margin"].item() == pytest.approx(2 / 3)  # 0 and 1 are above -1
    ls = OBJECTIVES.get("least_squares").d_stats(REAL, FAKE)
    assert ls["D/acc_real"].item() == pytest.approx(1 / 3)  # only 2 is above the midpoint ½


@pytest.mark.parametrize("name", ["hinge", "wasserstein"])
def test_label_smoothing_is_refused_where_it_means_nothing(name):
    with pytest.raises(UserError, match=rf"label smoothing\) have no effect with loss={name}"):
        build_loss(LossConfig(name=name, real_label=0.9))


def test_gradient_penalty_refuses_batchnorm_in_d():
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    check_discriminator(build_loss(LossConfig(name="hinge")), bn)  # no GP: fine
    check_discriminator(build_loss(LossConfig(name="wasserstein", gp_weight=10)), nn.Sequential(nn.GroupNorm(1, 2)))
    with pytest.raises(UserError, match=r"needs a discriminator without BatchNorm.*model.norm=layer"):
        check_discriminator(build_loss(LossConfig(name="wasserstein", gp_weight=10)), bn)
