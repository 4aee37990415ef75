"""The fast path (ganrun.train.fast) on the CPU: same math as a naive loop, options, fallbacks.

GPU-only checks (capture matches eager, bf16, channels_last, compile combinations) live in
tests/test_fastpath_gpu.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ganrun.config.schema import OptimizerConfig
from ganrun.losses import LossConfig
from ganrun.data import ArrayDataset, DataSpec
from ganrun.data.loader import BatchSource
from ganrun.errors import UserError
from ganrun.losses import build_loss
from ganrun.models import build_models, model_config
from ganrun.observe.stats import Stats
from ganrun.optim import build_optimizers
from ganrun.train import fast
from ganrun.train.step import GanStep, StepSettings

CPU = torch.device("cpu")
SEED = 3
BATCH = 32
STEPS = 10


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny CPU steps are fastest and steadiest on one thread (OpenMP spin-waits on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_dataset(n: int = 192, size: int = 8, seed: int = 0) -> ArrayDataset:
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=gen)
    spec = DataSpec(name="tiny", kind="image", shape=(1, size, size), num_classes=10, size=n)
    return ArrayDataset(data=data, labels=labels, spec=spec)


def make_step(ds: ArrayDataset, *, conditional=False, n_critic=1, ema=0.0, flip=False, gp=0.0) -> GanStep:
    """GanStep wired as `ganrun train` wires it, from torch.manual_seed(SEED)."""
    torch.manual_seed(SEED)
    G, D = build_models(model_config("mlp", conditional=conditional), ds.spec)
    G_ema = copy.deepcopy(G).requires_grad_(False) if ema else None
    loss = build_loss(LossConfig(name="non_saturating", gp_weight=gp))
    opt_G, opt_D = build_optimizers(OptimizerConfig(name="adam"), G, D)
    return GanStep(G, D, G_ema, loss, opt_G, opt_D, StepSettings(n_critic, ema, flip, "fp32"), CPU)


def run_ganrun(step_fn, ds: ArrayDataset, n_critic: int, steps: int = STEPS) -> list[tuple[float, float]]:
    source = BatchSource(ds, BATCH, CPU, seed=SEED)
    stats = Stats()
    out = []
    for i in range(steps):
        stats.report(step_fn([source.next() for _ in range(n_critic)], i))
        values = stats.collect()
        out.append((values["loss/D"], values["loss/G"]))
    return out


def run_reference(ds: ArrayDataset, *, conditional=False, n_critic=1, ema=0.0, flip=False,
                  steps: int = STEPS) -> tuple[list[tuple[float, float]], nn.Module, nn.Module]:
    """The tutorial GAN loop, written out naively: BCE on logits, Adam, fresh noise per phase."""
    torch.manual_seed(SEED)
    G, D = build_models(model_config("mlp", conditional=conditional), ds.spec)
    G_ema = copy.deepcopy(G)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    order_gen = torch.Generator().manual_seed(SEED)  # the data order: one permutation per epoch
    per_epoch = len(ds.data) // BATCH
    perm, position = torch.randperm(len(ds.data), generator=order_gen), 0
    losses = []
    for _ in range(steps):
        for _ in range(n_critic):
            if position == per_epoch:
                perm, position = torch.randperm(len(ds.data), generator=order_gen), 0
            idx = perm[position * BATCH:(position + 1) * BATCH]
            position += 1
            real = ds.data[idx].float() / 127.5 - 1.0
            c_real = ds.labels[idx] if conditional else None
            if flip:
                mirror = torch.rand(BATCH, 1, 1, 1) < 0.5
                real = torch.where(mirror, real.flip(3), real)
            z = torch.randn(BATCH, G.latent_dim)
            c_fake = c_real  # conditional fakes in the D phase take the reals' labels
            with torch.no_grad():
                fake = G(z, c_fake)
            d_real, d_fake = D(real, c_real), D(fake, c_fake)
            d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
            opt_D.zero_grad()
            d_loss.backward()
            opt_D.step()
        z = torch.randn(BATCH, G.latent_dim)
        c_fake = torch.randint(10, (BATCH,)) if conditional else None
        d_fake = D(G(z, c_fake), c_fake)
        g_loss = bce(d_fake, torch.ones_like(d_fake))
        opt_G.zero_grad()
        g_loss.backward()
        opt_G.step()
        if ema:
            with torch.no_grad():
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    p_ema.mul_(ema).add_(p, alpha=1 - ema)
                for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                    b_ema.copy_(b)
        losses.append((d_loss.item(), g_loss.item()))
    return losses, G, G_ema


# -- equivalence: the eager fast path trains the tutorial's math --------------------------------

@pytest.mark.parametrize("options", [
    dict(),
    dict(conditional=True, n_critic=2, ema=0.9, flip=True),
], ids=["mlp", "cgan-ncritic2-ema-flip"])
def test_eager_path_matches_naive_reference_loop(options):
    ds = tiny_dataset()
    step = make_step(ds, **options)
    ours = run_ganrun(fast.accelerate(step, "none"), ds, options.get("n_critic", 1))
    ref, G_ref, G_ema_ref = run_reference(ds, **options)
    # the same ops in the same order; only -log σ(x) (softplus vs BCE) and the EMA (lerp vs mul/add)
    # are written differently, so allow float32 rounding
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=1e-5, atol=1e-6)
    # Adam divides by sqrt(v): a rounding difference in a tiny gradient can move one weight ~1e-6
    for p, q in zip(step.G.parameters(), G_ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    if step.G_ema is not None:
        for p, q in zip(step.G_ema.parameters(), G_ema_ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_none_is_the_eager_step_bit_for_bit():
    ds = tiny_dataset()
    plain = run_ganrun(make_step(ds), ds, 1, steps=4)
    wrapped = run_ganrun(fast.accelerate(make_step(ds), "none"), ds, 1, steps=4)
    assert plain == wrapped


# -- fallbacks ----------------------------------------------------------------------------------

def test_graph_on_cpu_falls_back_with_one_message_and_same_losses():
    ds = tiny_dataset()
    messages: list[str] = []
    step_fn = fast.accelerate(make_step(ds), "graph", notify=messages.append)
    assert isinstance(step_fn, fast.EagerStep)
    assert len(messages) == 1
    assert messages[0].startswith("trainer.compile=graph: CUDA graphs need a CUDA device (training on cpu)")
    assert messages[0].endswith("training eagerly")
    assert run_ganrun(step_fn, ds, 1, steps=4) == run_ganrun(make_step(ds), ds, 1, steps=4)


def test_channels_last_is_ignored_on_cpu_with_a_message():
    ds = tiny_dataset()
    messages: list[str] = []
    step_fn = fast.accelerate(make_step(ds), "none", channels_last=True, notify=messages.append)
    assert messages == ["device.channels_last applies on CUDA only; ignored on cpu"]
    assert step_fn.memory_format == torch.contiguous_format


def test_failed_compile_mid_step_is_undone_and_training_continues_eagerly(monkeypatch):
    """A compile error after D has already stepped: the state is restored and the step rerun eagerly."""
    calls = {"D": 0}

    def fake_compile(fn, *args, **kwargs):
        if getattr(fn, "__name__", "") != "forward_features":
            return fn

        def compiled(*a, **k):
            calls["D"] += 1
            if calls["D"] == 3:  # D(real), D(fake), backward, opt_D.step(); then the G phase fails
                raise RuntimeError("inductor: simulated convolution_backward failure\nmore detail")
            return fn(*a, **k)

        return compiled

    monkeypatch.setattr(fast.torch, "compile", fake_compile)
    ds = tiny_dataset()
    messages: list[str] = []
    step = make_step(ds, ema=0.9)
    step_fn = fast.accelerate(step, "inductor", notify=messages.append)
    ours = run_ganrun(step_fn, ds, 1, steps=4)
    eager_step = make_step(ds, ema=0.9)
    assert ours == run_ganrun(eager_step, ds, 1, steps=4)
    assert messages == ["trainer.compile=inductor: compile failed (RuntimeError: inductor: simulated "
                        "convolution_backward failure); training eagerly"]
    for p, q in zip(step.G_ema.parameters(), eager_step.G_ema.parameters()):
        assert torch.equal(p, q)
    # the step is back on the modules' own forwards; the modules themselves were never changed
    assert step.G_forward is step.G and step.D_features == step.D.forward_features
    assert "forward_features" not in step.D.__dict__


def test_inductor_keeps_D_eager_when_the_loss_needs_double_backward(monkeypatch):
    monkeypatch.setattr(fast.torch, "compile", lambda fn, *a, **k: fn)
    ds = tiny_dataset()
    messages: list[str] = []
    step_fn = fast.accelerate(make_step(ds, gp=10.0), "inductor", notify=messages.append)
    assert step_fn.compiled_D is None
    assert len(messages) == 1 and "D stays eager" in messages[0]
    run_ganrun(step_fn, ds, 1, steps=2)


def test_bf16_autocast_runs_on_cpu():
    ds = tiny_dataset()
    step = make_step(ds)
    step.settings.precision = "bf16"
    bf16 = GanStep(step.G, step.D, None, step.loss, step.opt_G, step.opt_D, step.settings, CPU)
    history = run_ganrun(fast.accelerate(bf16, "none"), ds, 1, steps=3)
    assert all(torch.isfinite(torch.tensor(h)).all() for h in history)


def test_graph_variants_follow_lazy_r1():
    """The graph path keys its captured graphs by the step's own variant (no copy of the R1 rule)."""
    step = make_step(tiny_dataset())
    assert [step.variant(i) for i in range(4)] == [()] * 4
    step.loss = build_loss(LossConfig(name="non_saturating", r1_gamma=1.0, r1_every=4))
    r1 = ("r1",)
    assert [step.variant(i) for i in range(9)] == [r1, (), (), (), r1, (), (), (), r1]


def test_inductor_hands_compiled_forwards_to_the_step_only(monkeypatch):
    compiled = []
    monkeypatch.setattr(fast.torch, "compile", lambda fn, *a, **k: compiled.append(fn) or (lambda *x: fn(*x)))
    step = make_step(tiny_dataset())
    step_fn = fast.accelerate(step, "inductor")
    assert compiled == [step.G, step.D.forward_features]
    assert step.G_forward is step_fn.compiled_G and step.D_features is step_fn.compiled_D
    assert step_fn.batches_per_step == step.batches_per_step == 1


# -- options parsing ----------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("trainer.compile=cudagraph", "trainer.compile must be one of none, graph, inductor; got 'cudagraph'"),
    ("device.precision=fp8", "device.precision must be one of fp32, bf16, fp16; got 'fp8'"),
])
def test_bad_fast_path_options_name_the_key(compose_train, override, message):
    from ganrun.config.compose import to_typed

    with pytest.raises(UserError) as info:
        to_typed(compose_train([override]))
    assert str(info.value) == message


def test_fast_path_options_compose(compose_train):
    from ganrun.config.compose import to_typed

    c = to_typed(compose_train(["trainer.compile=graph", "device.precision=bf16", "device.channels_last=true"]))
    assert (c.trainer.compile, c.device.precision, c.device.channels_last) == ("graph", "bf16", True)
    with pytest.raises(Exception, match="channels_last"):
        to_typed(compose_train(["device.channels_last=maybe"]))


def test_train_with_graph_on_cpu_trains_and_says_why(compose_train, tmp_path, capsys):
    from ganrun.commands.train import train

    cfg = compose_train(["dataset=ring8", "dataset.num_points=2000", "device=cpu", "trainer.compile=graph",
                         "trainer.max_steps=4", "trainer.batch_size=64", "trainer.log_every=2",
                         "trainer.sample_every=0", "logger.progress=none", "logger.print_config=false",
                         "logger.tensorboard=false"])
    result = train(cfg, tmp_path / "run")
    assert result["step"] == 4.0
    err = capsys.readouterr().err
    assert err.count("trainer.compile=graph: CUDA graphs need a CUDA device") == 1


def test_stats_report_sums_with_one_fused_add():
    stats = Stats()
    stats.report({"a": torch.tensor(1.0), "b": torch.tensor(2)})
    stats.report({"a": torch.tensor(3.0), "c": torch.tensor(5.0)})
    stats.report({"a": torch.tensor(5.0), "b": torch.tensor(4)})
    assert stats.collect() == {"a": 3.0, "b": 3.0, "c": 5.0}
    assert stats.collect() == {}


@pytest.mark.slow
def test_inductor_on_cpu_matches_eager(monkeypatch):
    """A real torch.compile (about a minute on two cores): losses match eager within rounding.

    Inductor draws random numbers (D's dropout) from its own generator unless told to fall back
    to eager's, so the comparison asks for that; the math is the same either way.
    """
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    ds = tiny_dataset()
    messages: list[str] = []
    ours = run_ganrun(fast.accelerate(make_step(ds), "inductor", notify=messages.append), ds, 1, steps=4)
    assert messages == []
    eager = run_ganrun(make_step(ds), ds, 1, steps=4)
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(eager), rtol=1e-4, atol=1e-5)
