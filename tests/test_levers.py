"""The preset levers: DiffAugment on D's inputs, PacGAN packing, the EMA ramp-up.

Each test checks the lever where it acts (D's input, D's width, G_ema's decay), so removing the
lever from the step or the builder fails here.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganrun.data import DataSpec
from ganrun.losses import build_loss
from ganrun.losses.regularizers.diffaugment import POLICIES, DiffAugment, cutout, translation
from ganrun.models import build_models
from ganrun.optim import LrDecay
from ganrun.train.ema import EmaUpdate, half_life_images
from ganrun.train.step import GanStep, StepSettings
from tests.conftest import read_events

IMAGES = DataSpec(name="tiny", kind="images", shape=(1, 16, 16), size=64, num_classes=0)
POINTS = DataSpec(name="ring8", kind="points", shape=(2,), size=64, num_classes=0,
                  centers=((1.0, 0.0), (-1.0, 0.0)), mode_std=0.01)


def images(n: int = 8, c: int = 3, size: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, c, size, size) * 2 - 1


# -- DiffAugment ---------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", [["color"], ["translation"], ["cutout"], ["color", "translation", "cutout"]])
def test_diffaugment_keeps_shape_and_dtype_and_changes_the_images(policy):
    x = images()
    for dtype in (torch.float32, torch.float64):
        y = DiffAugment(policy)(x.to(dtype))
        assert y.shape == x.shape and y.dtype == dtype
        assert not torch.allclose(y, x.to(dtype)), policy  # the policy really transforms
        changed = (y != x.to(dtype)).flatten(1).any(1)
        assert changed.float().mean() > 0.5  # most samples get a non-trivial draw


def test_diffaugment_gradients_flow_to_the_input():
    x = images().requires_grad_(True)
    DiffAugment(["color", "translation", "cutout"])(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all()


def test_translation_moves_pixels_by_whole_steps_with_zero_fill():
    x = torch.ones(64, 1, 16, 16)
    y = translation(x)  # up to ±2 pixels on 16: the zero border is 0, 1 or 2 wide
    zeros_per_row = (y[:, 0, 8] == 0).sum(1)
    assert set(zeros_per_row.tolist()) <= {0, 1, 2} and zeros_per_row.max() > 0


def test_cutout_zeroes_one_square_of_half_the_size():
    x = torch.ones(64, 1, 16, 16)
    y = cutout(x)
    cut = (y == 0).flatten(1).sum(1)
    assert cut.max() == 64 and (cut > 0).all()  # an 8×8 square, clipped at the border


def test_diffaugment_empty_policy_is_the_identity_and_unknown_names_fail():
    x = images()
    assert torch.equal(DiffAugment([])(x), x) and not DiffAugment([])
    with pytest.raises(ValueError, match="unknown DiffAugment policy 'flip'"):
        DiffAugment(["flip"])
    assert set(POLICIES) == {"color", "translation", "cutout"}


class Recorder(nn.Module):
    """Wraps D and keeps every input it sees (in the D and G phases)."""

    def __init__(self, D: nn.Module) -> None:
        super().__init__()
        self.D, self.seen = D, []
        self.in_shape, self.num_classes = D.in_shape, D.num_classes

    def forward(self, x, c=None):
        return self.forward_features(x, c)[0]

    def forward_features(self, x, c=None):
        self.seen.append(x)
        return self.D.forward_features(x, c)


def loss_cfg(**kw):
    from ganrun.losses import LossConfig

    return LossConfig(name="non_saturating", **kw)


def model_cfg(**kw):
    from ganrun.models import model_config

    return model_config("mlp", latent_dim=8, **kw)


def tiny_step(spec, loss, model=None, settings=None, ema=False):
    torch.manual_seed(0)
    G, D = build_models(model or model_cfg(), spec)
    D = Recorder(D)
    G_ema = None
    if ema:
        import copy

        G_ema = copy.deepcopy(G).requires_grad_(False)
    opt_G = torch.optim.Adam(G.parameters(), 1e-3)
    opt_D = torch.optim.Adam(D.parameters(), 1e-3)
    settings = settings or StepSettings(1, 0.0, False, "fp32")
    return GanStep(G, D, G_ema, build_loss(loss), opt_G, opt_D, settings, torch.device("cpu")), G, D


def uint8_batch(n=8):
    torch.manual_seed(1)
    return torch.randint(0, 256, (n, *IMAGES.shape), dtype=torch.uint8), None


@pytest.mark.parametrize("policy", [["translation"], ["color", "translation", "cutout"]])
def test_the_step_shows_D_augmented_reals_and_G_gets_gradients_through_it(policy):
    step, G, D = tiny_step(IMAGES, loss_cfg(diffaugment=policy))
    x, _ = uint8_batch()
    real = x.float() / 127.5 - 1
    step([(x, None)], 0)
    d_real_input = D.seen[0]  # the D phase's first call: the reals
    assert d_real_input.shape == real.shape
    assert not torch.allclose(d_real_input, real)  # D saw augmented reals, not the batch
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters() if p.requires_grad)


def test_without_diffaugment_D_sees_the_reals_as_they_are():
    step, _, D = tiny_step(IMAGES, loss_cfg())
    x, _ = uint8_batch()
    step([(x, None)], 0)
    assert torch.allclose(D.seen[0], x.float() / 127.5 - 1)


# -- The categorical latent code ---------------------------------------------------------------

def test_the_latent_code_is_uniform_over_its_components_and_read_from_z0_alone():
    from ganrun.models.layers import CategoricalLatent

    code = CategoricalLatent(7, embed_dim=3)
    z = torch.randn(70_000, 4, generator=torch.Generator().manual_seed(0))
    k = code.component(z)
    counts = torch.bincount(k, minlength=7)
    assert counts.shape == (7,) and (counts - 10_000).abs().max() < 400, counts  # ~4 sigma of a binomial
    shuffled = torch.cat([z[:, :1], z[torch.randperm(len(z)), 1:]], dim=1)
    assert torch.equal(code.component(shuffled), k)  # the rest of z does not choose the component
    out = code(z[:8])
    assert torch.equal(out, torch.cat([z[:8, 1:], code.embed.weight[k[:8]]], dim=1))  # (N, D - 1 + embed)
    edge = torch.tensor([[-40.0, 0, 0, 0], [40.0, 0, 0, 0]])  # Phi = 0 and 1: the first and last component
    assert code.component(edge).tolist() == [0, 6]


@pytest.mark.parametrize("components", [0, 4])
def test_G_with_a_latent_code_jumps_between_components_and_is_continuous_within(components):
    """The lever's point: G's output jumps where z_0 crosses from one component to the next (so
    disconnected modes need no bridge), and moves smoothly inside a component."""
    from ganrun.models import model_config

    G, _ = build_models(model_config("mlp", latent_dim=3, latent_components=components, embed_dim=5, g_norm="none",
                                     g_widths=[32, 32]), POINTS)
    assert first_linear(G).in_features == (2 + 5 if components else 3)
    G.eval()
    boundary = -0.6744897501960817  # Phi^-1(1/4): components 0 and 1 of 4 meet here
    rest = torch.tensor([0.3, -0.7])

    def at(z0):
        return G(torch.cat([torch.tensor([z0]), rest])[None]).detach()

    across = (at(boundary + 1e-4) - at(boundary - 1e-4)).norm()
    within = (at(0.3 + 1e-4) - at(0.3 - 1e-4)).norm()
    assert within < 1e-3
    assert (across > 100 * within) == bool(components), (across, within)


@pytest.mark.parametrize("values, message", [
    ({"latent_components": 1}, "model.latent_components must be 0 (off) or >= 2, got 1"),
    ({"latent_components": -3}, "model.latent_components must be 0 (off) or >= 2, got -3"),
    ({"latent_components": 8, "latent_dim": 1}, "needs model.latent_dim >= 2, got 1"),
])
def test_a_latent_code_that_cannot_be_drawn_is_refused(values, message):
    from ganrun.errors import UserError
    from ganrun.models import model_config

    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model_config("mlp", **values).check(POINTS)


# -- PacGAN packing ------------------------------------------------------------------------------

def first_linear(D: nn.Module) -> nn.Linear:
    return next(m for m in D.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("pack", [1, 2, 4])
def test_packed_D_reads_m_samples_per_row_and_gives_one_logit_per_pack(pack):
    _, D = build_models(model_cfg(pack=pack, d_widths=[16, 16]), POINTS)
    assert first_linear(D).in_features == pack * 2  # m × data dim
    logits = D(torch.randn(8, 2))
    assert logits.shape == (8 // pack,)


def test_packing_puts_consecutive_samples_in_one_pack():
    _, D = build_models(model_cfg(pack=2, d_widths=[4]), POINTS)
    D.eval()
    x = torch.randn(4, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(D(x)[0], x)
    depends = grad.abs().sum(1) > 0
    assert depends.tolist() == [True, True, False, False]  # pack 0 is samples 0 and 1, nothing else
    x = x.detach()
    swapped_within = x[[1, 0, 2, 3]]  # the same two samples in the first pack, other order
    moved_across = x[[2, 1, 0, 3]]
    assert not torch.allclose(D(x), D(swapped_within))  # order inside a pack is part of D's input
    assert D(moved_across).shape == (2,)


def test_packed_conditional_D_packs_the_label_embeddings_too():
    spec = DataSpec(name="tiny", kind="images", shape=(1, 4, 4), size=8, num_classes=3)
    _, D = build_models(model_cfg(pack=2, conditional=True, embed_dim=5, d_widths=[8]), spec)
    assert first_linear(D).in_features == 2 * (16 + 5)
    assert D(torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])).shape == (3,)


def test_a_batch_the_pack_does_not_divide_fails_in_D():
    _, D = build_models(model_cfg(pack=4), POINTS)
    with pytest.raises(ValueError, match="model.pack=4"):
        D(torch.randn(6, 2))


def test_the_step_trains_a_packed_D():
    step, _, D = tiny_step(POINTS, loss_cfg(), model_cfg(pack=4, d_widths=[16]))
    stats = step([(torch.randn(8, 2), None)], 0)
    assert torch.isfinite(stats["loss/D"]) and torch.isfinite(stats["loss/G"])
    assert first_linear(D).in_features == 8


# -- EMA ramp-up ---------------------------------------------------------------------------------

def test_half_life_matches_the_decay():
    assert half_life_images(0.5, 1) == pytest.approx(1.0)
    assert half_life_images(0.999, 64) == pytest.approx(64 * math.log(0.5) / math.log(0.999))


def test_ema_rampup_beta_over_the_first_steps():
    """β_t = 0.5^(1/(r·t)) while r·t·B is below the half-life, then the configured decay."""
    G = nn.Linear(1, 1)
    ema = EmaUpdate(nn.Linear(1, 1), G, decay=0.999, rampup=0.05, batch_size=64)
    betas = []
    for _ in range(400):
        betas.append(float(ema.beta()))
        ema()
    assert betas[0] == 0.0  # the first update copies G
    for t in (1, 10, 20, 100):
        assert betas[t] == pytest.approx(0.5 ** (1 / (0.05 * t)), rel=1e-6)
    assert betas[20] == pytest.approx(0.5)
    switch = math.ceil(half_life_images(0.999, 64) / (0.05 * 64))  # 13,859 steps: beyond this run
    assert switch > 400 and all(b < 0.999 for b in betas)
    assert all(a <= b for a, b in zip(betas, betas[1:]))  # monotone ramp
    late = EmaUpdate(nn.Linear(1, 1), G, decay=0.999, rampup=0.05, batch_size=64, start_nimg=64 * 20_000)
    assert float(late.beta()) == pytest.approx(0.999)  # a resumed run is past the ramp


def test_ema_update_applies_beta_to_the_weights():
    torch.manual_seed(0)
    G, G_ema = nn.Linear(3, 2), nn.Linear(3, 2)
    ema = EmaUpdate(G_ema, G, decay=0.99, rampup=0.1, batch_size=8)
    ema()  # β = 0: G_ema = G
    assert torch.allclose(G_ema.weight, G.weight)
    with torch.no_grad():
        G.weight.add_(1.0)
    before = G_ema.weight.clone()
    beta = float(ema.beta())  # t = 1: 0.5^(1/0.1) ≈ 0.00098
    ema()
    assert torch.allclose(G_ema.weight, beta * before + (1 - beta) * G.weight, atol=1e-6)


def test_without_rampup_the_decay_is_constant_from_the_first_step():
    G, G_ema = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        G.weight.fill_(1.0)
        G_ema.weight.fill_(0.0)
    EmaUpdate(G_ema, G, decay=0.9, rampup=0.0, batch_size=8)()
    assert float(G_ema.weight) == pytest.approx(0.1)


def test_the_step_ramps_the_ema_up():
    settings = StepSettings(1, 0.999, False, "fp32", ema_rampup=0.05, batch_size=8)
    step, G, _ = tiny_step(POINTS, loss_cfg(), model_cfg(d_widths=[16], g_widths=[16]), settings, ema=True)
    step([(torch.randn(8, 2), None)], 0)
    # first update: β = 0, so G_ema is G's weights after its first step
    for p_ema, p in zip(step.G_ema.parameters(), G.parameters()):
        assert torch.allclose(p_ema, p)
    assert float(step._ema.nimg) == 8


def test_diffaugment_on_points_is_a_user_error(ganrun):
    proc = ganrun("train", "experiment=ring8", "device=cpu", "loss.diffaugment=[color]", "trainer.max_steps=2")
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "loss.diffaugment=['color'] transforms images" in proc.stderr


def test_a_batch_the_pack_does_not_divide_is_one_line_before_any_work(ganrun, tmp_path):
    proc = ganrun("train", "experiment=ring8", "device=cpu", "model.pack=3", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2
    assert "trainer.batch_size=512 must be a multiple of model.pack=3" in proc.stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


# -- MLP widths ----------------------------------------------------------------------------------

def hidden_widths(net: nn.Module) -> list[int]:
    return [m.out_features for m in net.modules() if isinstance(m, nn.Linear)][:-1]  # the last is the output


def test_g_widths_and_d_widths_replace_the_hidden_widths():
    G, D = build_models(model_cfg(g_widths=[7, 9], d_widths=[5]), POINTS)
    assert hidden_widths(G) == [7, 9] and hidden_widths(D) == [5]
    G, D = build_models(model_cfg(), IMAGES)  # [] keeps the tutorial widths
    assert hidden_widths(G) == [256, 512, 1024] and hidden_widths(D) == [512, 256]


def test_g_norm_none_drops_every_batchnorm_of_g_and_keeps_its_widths():
    G, _ = build_models(model_cfg(g_widths=[7, 9]), POINTS)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.modules()) == 2
    G, D = build_models(model_cfg(g_widths=[7, 9], g_norm="none"), POINTS)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in G.modules())
    assert hidden_widths(G) == [7, 9]
    G.train()
    z = torch.randn(4, 8)
    assert torch.allclose(G(z[:2]), G(z)[:2], atol=1e-6)  # no batch statistics: each sample is its own


# -- learning-rate decay -------------------------------------------------------------------------

def test_lr_decay_factors_run_from_one_to_zero():
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1.0)
    linear, cosine = LrDecay("linear", [opt], 10), LrDecay("cosine", [opt], 10)
    assert [linear.factor(s) for s in (0, 5, 9, 10)] == pytest.approx([1.0, 0.5, 0.1, 0.0])
    assert [cosine.factor(s) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    assert cosine.factor(2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    assert LrDecay("none", [opt], 10).factor(7) == 1.0
    with pytest.raises(ValueError, match="lr decay must be one of none, linear, cosine"):
        LrDecay("step", [opt], 10)


def test_the_step_sets_each_groups_lr_from_the_built_one_whatever_a_checkpoint_left():
    torch.manual_seed(0)
    G, D = build_models(model_cfg(d_widths=[16], g_widths=[16]), POINTS)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 4e-3)
    decay = LrDecay("linear", (opt_D, opt_G), 20)  # made at build, before any restore
    step = GanStep(G, D, None, build_loss(loss_cfg()), opt_G, opt_D, StepSettings(1, 0.0, False, "fp32"),
                   torch.device("cpu"), lr_decay=decay)
    opt_G.param_groups[0]["lr"] = opt_D.param_groups[0]["lr"] = 123.0  # e.g. a restored, already decayed lr
    lrs_in_update = []
    opt_G.register_step_pre_hook(lambda opt, *_: lrs_in_update.append(opt.param_groups[0]["lr"]))
    for index in (0, 15):
        step([(torch.randn(8, 2), None)], index)
    assert lrs_in_update == pytest.approx([1e-3, 1e-3 * 0.25])
    assert opt_D.param_groups[0]["lr"] == pytest.approx(4e-3 * 0.25)


def test_a_decayed_run_ends_at_the_last_steps_lr_and_graph_capture_refuses_it(ganrun, tmp_path):
    run = tmp_path / "r"
    proc = ganrun("train", "dataset=ring8", "device=cpu", "optimizer.lr_decay=linear", "optimizer.lr=1e-3",
                  "trainer.max_steps=8", "trainer.batch_size=16", "trainer.log_every=1", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-1500:]
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    for key in ("opt_G", "opt_D"):
        assert state[key]["param_groups"][0]["lr"] == pytest.approx(1e-3 * (1 - 7 / 8))  # step index 7 of 8
    events = read_events(run)  # TensorBoard's lr/G and lr/D: the lr each step trained at
    for tag in ("lr/G", "lr/D"):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(s, pytest.approx(1e-3 * (1 - (s - 1) / 8))) for s in range(1, 9)]
    constant = tmp_path / "c"
    assert ganrun("train", "dataset=ring8", "device=cpu", "trainer.max_steps=2", "trainer.batch_size=16",
                  f"hydra.run.dir={constant}").returncode == 0
    assert "lr/G" not in read_events(constant).Tags()["scalars"]
    proc = ganrun("train", "dataset=ring8", "device=cpu", "optimizer.lr_decay=cosine", "trainer.compile=graph",
                  f"hydra.run.dir={tmp_path / 'g'}")
    assert proc.returncode == 2 and "trainer.compile=inductor or none" in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]


def test_g_activation_relu_replaces_every_leaky_relu_of_g():
    G, _ = build_models(model_cfg(g_widths=[7, 9]), POINTS)
    assert sum(isinstance(m, nn.LeakyReLU) for m in G.modules()) == 2
    G, D = build_models(model_cfg(g_widths=[7, 9], g_activation="relu"), POINTS)
    assert sum(isinstance(m, nn.ReLU) for m in G.modules()) == 2
    assert not any(isinstance(m, nn.LeakyReLU) for m in G.modules())
    assert sum(isinstance(m, nn.LeakyReLU) for m in D.modules()) == 2  # D keeps its own, one per hidden layer


def test_the_config_accepts_exactly_the_lr_decays_there_are():
    from ganrun.config.validate import validate_optimizer
    from ganrun.config.schema import OptimizerConfig
    from ganrun.errors import UserError
    from ganrun.optim import LR_DECAYS

    for kind in LR_DECAYS:
        validate_optimizer(OptimizerConfig(name="adam", lr_decay=kind))
    with pytest.raises(UserError, match="optimizer.lr_decay must be one of none, linear, cosine"):
        validate_optimizer(OptimizerConfig(name="adam", lr_decay="exp"))
