"""The GAN step against hand-written updates: each regularizer, n_critic, EMA, precision.

Every test recomputes a phase's gradient by hand (the formula written out, not ganrun's helpers)
from the same random draws, in the step's order, and compares it with the gradient the step left
on the network. Removing a feature from the step (a penalty, its lazy scaling, the noise, the
targets, an update) makes its test fail.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ganrun.config.schema import OptimizerConfig
from ganrun.losses import LossConfig
from ganrun.data import DataSpec
from ganrun.losses import build_loss
from ganrun.models import build_models, model_config
from ganrun.optim import build_optimizers
from ganrun.train.step import GanStep, StepSettings

CPU = torch.device("cpu")
N = 16
SPEC = DataSpec(name="tiny", kind="image", shape=(1, 4, 4), num_classes=10, size=64)


def make_step(loss: str = "non_saturating", *, n_critic: int = 1, ema: float = 0.0, precision: str = "fp32",
              **loss_options) -> GanStep:
    torch.manual_seed(0)
    G, D = build_models(model_config("mlp", dropout=0.0), SPEC)
    D.eval()  # no dropout: the only random draws are the step's own
    G_ema = copy.deepcopy(G).requires_grad_(False) if ema else None
    opt_G, opt_D = build_optimizers(OptimizerConfig(name="adam"), G, D)
    return GanStep(G, D, G_ema, build_loss(LossConfig(name=loss, **loss_options)), opt_G, opt_D,
                   StepSettings(n_critic, ema, False, precision), CPU)


def batches(k: int = 1) -> list:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 256, (N, *SPEC.shape), generator=gen, dtype=torch.uint8), None) for _ in range(k)]


def reals(batch) -> torch.Tensor:
    return batch[0].float() / 127.5 - 1.0


def grads(module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


def run(step: GanStep, step_index: int = 0, k: int = 1):
    """One step from seed 5; returns (G and D before it, stats)."""
    G0, D0 = copy.deepcopy(step.G), copy.deepcopy(step.D)
    torch.manual_seed(5)
    stats = step(batches(k), step_index)
    return G0, D0, stats


def input_grad(D, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return g.flatten(1)


def hand_d_grad(D0, G0, real, *, penalty=None, noise: float = 0.0, targets=(1.0, 0.0), objective="bce"):
    """D's gradient of one D phase, written out: the step's draws in the step's order."""
    torch.manual_seed(5)
    z = torch.randn(N, G0.latent_dim)
    with torch.no_grad():
        fake = G0(z)
    seen_real = real + noise * torch.randn_like(real) if noise else real
    seen_fake = fake + noise * torch.randn_like(fake) if noise else fake
    r, f = D0(seen_real), D0(seen_fake)
    if objective == "bce":  # -t log σ(r) - (1-t) log(1-σ(r)), likewise for f
        t_r, t_f = targets
        loss = (-(t_r * F.logsigmoid(r) + (1 - t_r) * F.logsigmoid(-r))).mean() \
            + (-(t_f * F.logsigmoid(f) + (1 - t_f) * F.logsigmoid(-f))).mean()
    else:  # wasserstein
        loss = f.mean() - r.mean()
    extra = penalty(D0, real, fake) if penalty else torch.zeros(())
    (loss + extra).backward()
    return grads(D0), extra.detach()


def assert_grads(got, want, *, different_from=None):
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    if different_from is not None:  # the feature moves the gradient well beyond the tolerance
        assert max((g - w).abs().max().item() for g, w in zip(got, different_from)) > 1e-3


def test_gradient_penalty_is_in_the_d_update():
    step = make_step("wasserstein", gp_weight=10.0)
    G0, D0, stats = run(step)
    real = reals(batches()[0])

    def gp(D, real, fake):  # λ E[(‖∇D(x̂)‖ - 1)²], x̂ = εx + (1-ε)G(z)
        eps = torch.rand(N, 1, 1, 1)
        x_hat = eps * real + (1 - eps) * fake
        return 10.0 * (input_grad(D, x_hat).norm(dim=1) - 1).square().mean()

    want, penalty = hand_d_grad(copy.deepcopy(D0), G0, real, penalty=gp, objective="wasserstein")
    without, _ = hand_d_grad(copy.deepcopy(D0), G0, real, objective="wasserstein")
    assert_grads(grads(step.D), want, different_from=without)
    torch.testing.assert_close(stats["D/gp"] * 10.0, penalty, rtol=1e-4, atol=1e-6)


def dense_grads(params) -> list[torch.Tensor]:
    """Gradients with zeros where a parameter got none (R1 does not reach D's last bias)."""
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


def record_updates(opt) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Wrap `opt.step` to record (parameters before, gradients) of every update it makes."""
    seen, step = [], opt.step

    def recording(*args, **kwargs):
        params = [p for g in opt.param_groups for p in g["params"]]
        seen.append(([p.detach().clone() for p in params], dense_grads(params)))
        return step(*args, **kwargs)

    opt.step = recording
    return seen


@pytest.mark.parametrize("step_index, due", [(0, True), (3, True), (1, False)])
def test_lazy_r1_is_its_own_d_update_every_k_steps_scaled_by_k(step_index, due):
    """StyleGAN2-ADA's Dmain / Dreg: the D update has the objective alone; on due steps a second
    update of D (D_reg) has γ/2 · k · R1 alone, on the same reals, from D after the first update."""
    step = make_step(r1_gamma=2.0, r1_every=3)
    assert [p.name for p in step.phases] == ["D", "D_reg", "G"] and step.optimizers == (step.opt_D, step.opt_G)
    updates = record_updates(step.opt_D)
    assert step.variant(step_index) == (("r1",) if due else ())
    G0, D0, stats = run(step, step_index)
    real = reals(batches()[0])

    def r1(D, real, fake):  # γ/2 · k · E[‖∇D(x)‖²]
        return (2.0 / 2) * 3 * input_grad(D, real).square().sum(1).mean()

    objective, _ = hand_d_grad(copy.deepcopy(D0), G0, real)
    with_r1, _ = hand_d_grad(copy.deepcopy(D0), G0, real, penalty=r1)
    assert len(updates) == (2 if due else 1)
    assert_grads(updates[0][1], objective, different_from=with_r1)
    assert ("D/r1" in stats) == due and ("grad_norm/D_reg" in stats) == due
    if due:
        D1 = copy.deepcopy(D0)
        with torch.no_grad():
            for p, before in zip(D1.parameters(), updates[1][0]):
                p.copy_(before)
        assert max((a - b).abs().max().item() for a, b in zip(updates[1][0], updates[0][0])) > 1e-5  # D moved
        D1.zero_grad()
        r1(D1, real, None).backward()
        assert_grads(updates[1][1], dense_grads(list(D1.parameters())))


def test_lazy_regularization_rescales_d_optimizer_by_k_over_k_plus_1():
    from ganrun.models import build_models as build

    G, D = build(model_config("mlp"), SPEC)
    cfg = OptimizerConfig(name="adam", lr=2e-4, betas=[0.5, 0.99])
    plain_G, plain_D = build_optimizers(cfg, G, D)
    opt_G, opt_D = build_optimizers(cfg, G, D, d_reg_every=4)
    c = 4 / 5
    assert opt_G.param_groups[0]["lr"] == plain_G.param_groups[0]["lr"] == 2e-4
    assert opt_D.param_groups[0]["lr"] == pytest.approx(2e-4 * c) and plain_D.param_groups[0]["lr"] == 2e-4
    assert opt_D.param_groups[0]["betas"] == pytest.approx((0.5 ** c, 0.99 ** c))


def test_instance_noise_reaches_d_inputs():
    step = make_step(instance_noise=0.5)
    G0, D0, _ = run(step)
    real = reals(batches()[0])
    want, _ = hand_d_grad(copy.deepcopy(D0), G0, real, noise=0.5)
    assert_grads(grads(step.D), want, different_from=hand_d_grad(copy.deepcopy(D0), G0, real)[0])


def test_label_smoothing_sets_the_targets():
    step = make_step(real_label=0.9, fake_label=0.1)
    G0, D0, _ = run(step)
    real = reals(batches()[0])
    want, _ = hand_d_grad(copy.deepcopy(D0), G0, real, targets=(0.9, 0.1))
    assert_grads(grads(step.D), want, different_from=hand_d_grad(copy.deepcopy(D0), G0, real)[0])


def hand_g_grad(G0, D1, real, fm_weight: float):
    """G's gradient of the G phase: fresh noise after the D phase's, D as the D phase left it."""
    torch.manual_seed(5)
    torch.randn(N, G0.latent_dim)  # the D phase's z
    z = torch.randn(N, G0.latent_dim)
    logits, features = D1.forward_features(G0(z))
    loss = F.softplus(-logits).mean()  # -log σ(D(G(z)))
    if fm_weight:
        with torch.no_grad():
            _, real_features = D1.forward_features(real)
        loss = loss + fm_weight * (features.mean(0) - real_features.mean(0)).square().mean()
    loss.backward()
    return grads(G0)


def test_feature_matching_is_in_the_g_update():
    step = make_step(feature_matching=2.0)
    G0, _, stats = run(step)
    real = reals(batches()[0])
    D1 = copy.deepcopy(step.D).requires_grad_(False)
    want = hand_g_grad(copy.deepcopy(G0), D1, real, 2.0)
    assert_grads(grads(step.G), want, different_from=hand_g_grad(copy.deepcopy(G0), D1, real, 0.0))
    assert "loss/feature_matching" in stats


def test_mode_seeking_pairs_the_labels_and_is_in_the_g_update():
    """MSGAN's term on a conditional G: the G batch's halves share labels, and G's gradient is the
    objective's plus w / (mean|G(z₁,c) − G(z₂,c)| / mean|z₁ − z₂| + ε), written out."""

    def conditional_step(**options) -> GanStep:
        torch.manual_seed(0)
        G, D = build_models(model_config("mlp", dropout=0.0, conditional=True), SPEC)
        D.eval()
        opt_G, opt_D = build_optimizers(OptimizerConfig(name="adam"), G, D)
        return GanStep(G, D, None, build_loss(LossConfig(name="non_saturating", **options)), opt_G, opt_D,
                       StepSettings(1, 0.0, False, "fp32"), CPU)

    x, _ = batches()[0]
    labelled = [(x, torch.arange(N) % 10)]

    def one_step(step):
        G0 = copy.deepcopy(step.G)
        seen = []
        step.G.embed.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
        torch.manual_seed(5)
        stats = step(labelled, 0)
        return G0, copy.deepcopy(step.D).requires_grad_(False), seen[-1], stats  # seen[-1]: the G phase's labels

    def hand(G0, D1, weight):
        torch.manual_seed(5)
        torch.randn(N, G0.latent_dim)  # the D phase's z (its labels are the reals')
        z = torch.randn(N, G0.latent_dim)
        c = torch.randint(10, (N,))
        c = torch.cat([c[: N // 2], c[: N // 2]])
        fake = G0(z, c)
        loss = F.softplus(-D1(fake, c)).mean()
        if weight:
            h = N // 2
            apart = (fake[:h] - fake[h:]).abs().mean() / (z[:h] - z[h:]).abs().mean()
            loss = loss + weight / (apart + 1e-5)
        loss.backward()
        return grads(G0), c

    step = conditional_step(mode_seeking=2.0)
    G0, D1, labels, stats = one_step(step)
    want, c = hand(copy.deepcopy(G0), D1, 2.0)
    assert torch.equal(labels, c) and torch.equal(labels[: N // 2], labels[N // 2:])
    assert_grads(grads(step.G), want, different_from=hand(copy.deepcopy(G0), D1, 0.0)[0])
    assert "loss/mode_seeking" in stats and stats["loss/mode_seeking"] > 0
    # off: the G phase's labels are uniform draws, unpaired
    G0, _, labels, stats = one_step(conditional_step())
    torch.manual_seed(5)
    torch.randn(N, G0.latent_dim), torch.randn(N, G0.latent_dim)
    assert torch.equal(labels, torch.randint(10, (N,))) and "loss/mode_seeking" not in stats


def test_n_critic_updates_d_once_per_batch_and_the_step_asks_for_them():
    step = make_step(n_critic=3)
    assert step.batches_per_step == 3
    with pytest.raises(AssertionError):
        step(batches(1), 0)
    run(step, k=3)
    assert int(step.opt_D.state[next(step.D.parameters())]["step"]) == 3
    assert int(step.opt_G.state[next(step.G.parameters())]["step"]) == 1


def test_ema_follows_g_by_its_decay():
    step = make_step(ema=0.75)
    ema0 = copy.deepcopy(step.G_ema)
    run(step)
    for p_ema, p0, p in zip(step.G_ema.parameters(), ema0.parameters(), step.G.parameters()):
        torch.testing.assert_close(p_ema, 0.75 * p0 + 0.25 * p)
        assert not torch.equal(p_ema, p0)
    for b_ema, b in zip(step.G_ema.buffers(), step.G.buffers()):
        assert torch.equal(b_ema, b)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_precision_is_the_dtype_the_layers_compute_in(precision, dtype):
    step = make_step(precision=precision)
    seen: list[torch.dtype] = []
    first_d = next(m for m in step.D.modules() if isinstance(m, torch.nn.Linear))
    first_g = next(m for m in step.G.modules() if isinstance(m, torch.nn.Linear))
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype)) for m in (first_d, first_g)]
    try:
        _, _, stats = run(step)
    finally:
        for h in hooks:
            h.remove()
    assert seen and set(seen) == {dtype}
    assert stats["loss/D"].dtype == torch.float32 and torch.isfinite(stats["loss/D"])


@pytest.mark.parametrize("loss, present, absent", [
    ("non_saturating", {"D/D(x)", "D/D(G(z))", "D/acc_real", "D/acc_fake"}, {"D/wasserstein"}),
    ("hinge", {"D/real_score", "D/fake_score", "D/real_in_margin", "D/fake_in_margin", "D/acc_real"},
     {"D/D(x)", "D/wasserstein"}),
    ("wasserstein", {"D/critic_real", "D/critic_fake", "D/wasserstein"}, {"D/D(x)", "D/acc_real"}),
])
def test_each_objective_logs_what_its_outputs_mean(loss, present, absent):
    options = {"gp_weight": 10.0} if loss == "wasserstein" else {}
    _, _, stats = run(make_step(loss, **options))
    assert present <= set(stats) and not absent & set(stats)
    assert {"loss/D", "loss/G", "grad_norm/D", "grad_norm/G"} <= set(stats)


@pytest.mark.parametrize("conditional, model, first", [(False, "dcgan", "model.minibatch_std=true"),
                                                         (True, "cdcgan", "loss.mode_seeking=1.0")])
def test_the_collapse_hint_names_overrides_that_compose(compose_train, conditional, model, first):
    """A collapsed conditional G is pointed to mode seeking first (within-class minibatch std and
    feature matching did not undo it, docs/presets.md); every override the hint names composes and
    turns its lever on."""
    import re

    from omegaconf import OmegaConf

    from ganrun.observe.health import Health

    health = Health(conditional=conditional)
    assert health.check_metrics({"diversity_ratio/domain": 0.5}) == []
    (warning,) = health.check_metrics({"diversity_ratio/domain": 0.1})
    assert "0.10× that of real data" in warning
    named = re.findall(r"\b((?:model|loss)\.\w+=[\w.]+)", warning)
    assert named[0] == first and ("loss.mode_seeking=1.0" in named) == conditional, named
    base = compose_train([f"model={model}"])
    for override in named:
        key, value = override.split("=")
        cfg = compose_train([f"model={model}", override])
        assert OmegaConf.select(cfg, key) != OmegaConf.select(base, key) and str(OmegaConf.select(cfg, key)).lower() == value
    assert health.check_metrics({"diversity_ratio/domain": 0.1}) == []  # once per episode


@pytest.mark.parametrize("model, conditional", [("mlp", False), ("cgan", True)])
def test_a_training_run_gives_its_health_check_the_kind_of_generator(model, conditional, compose_train, idx_root,
                                                                      tmp_path, monkeypatch):
    """The run, not the user, tells the health check whether G is conditional, so a collapsed
    conditional run is pointed to mode seeking."""
    import ganrun.commands.train as train_command
    from ganrun.observe.health import Health

    made: list[Health] = []

    class Recorded(Health):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            made.append(self)

    monkeypatch.setattr(train_command, "Health", Recorded)
    cfg = compose_train([f"model={model}", "dataset=fashion_mnist", f"dataset.root={idx_root}", "device=cpu",
                         "trainer.max_steps=2", "trainer.batch_size=16", "eval.every=0", "logger.progress=none",
                         "logger.tensorboard=false", "logger.print_config=false"])
    train_command.train(cfg, run_dir=tmp_path / model)
    assert [h.conditional for h in made] == [conditional]


def test_health_reads_accuracies_only_where_the_objective_logs_them():
    from ganrun.observe.health import Health

    critic = {"D/critic_real": 5.0, "D/critic_fake": -5.0, "D/wasserstein": 10.0}
    health = Health()
    assert all(health.check_scalars(critic) == [] for _ in range(5))
    wins = {"D/acc_real": 1.0, "D/acc_fake": 1.0}
    warnings = [health.check_scalars(wins) for _ in range(3)]
    assert warnings[:2] == [[], []] and "G's gradients are vanishing" in warnings[2][0]
