"""The fast path on a CUDA device: capture matches eager, bf16/fp16, channels_last, every combination.

Skipped without CUDA (`make test` also deselects the `gpu` mark). Run on a GPU machine with
`python -m pytest -m gpu tests/test_fastpath_gpu.py` (add `-m "gpu"` without `not slow` to include
the inductor combinations, which compile for a while).
"""

from __future__ import annotations

import copy
import math
from typing import Optional

import pytest
import torch
from torch import nn

from ganrun.config.schema import OptimizerConfig
from ganrun.losses import LossConfig
from ganrun.data import DataSpec
from ganrun.losses import build_loss
from ganrun.models import MODELS, Discriminator, Generator, build_models, model_config
from ganrun.optim import build_optimizers
from ganrun.train import fast
from ganrun.train.step import GanStep, StepSettings

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SEED = 5
BATCH = 64
CHECKED_STEPS = 8  # 3 eager warm-up steps, the capture, then replays


class TinyConvG(Generator):
    """z → 4×4 → 8×8 → 16×16 with ConvTranspose + BatchNorm2d + ReLU, Tanh out."""

    def __init__(self, latent_dim: int, out_shape) -> None:
        super().__init__(latent_dim, out_shape)
        c = out_shape[0]
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 32, 4, 1, 0, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),  # 32×4×4
            nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),  # 16×8×8
            nn.ConvTranspose2d(16, c, 4, 2, 1, bias=False), nn.Tanh(),  # c×16×16
        )

    def synthesize(self, z, c):
        return self.net(z[:, :, None, None])


class TinyConvD(Discriminator):
    def __init__(self, in_shape) -> None:
        super().__init__(in_shape)
        self.features = nn.Sequential(
            nn.Conv2d(in_shape[0], 16, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 16×8×8
            nn.Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2, True), nn.Dropout(0.1),  # 32×4×4
            nn.Flatten(),
        )
        self.head = nn.Linear(32 * 16, 1)

    def forward_features(self, x, c=None):
        feats = self.features(x)
        return self.head(feats).squeeze(1), feats


def build_step(model: str = "mlp", *, loss: str = "non_saturating", gp: float = 0.0, r1: float = 0.0,
               r1_every: int = 1, n_critic: int = 1, ema: float = 0.0, precision: str = "fp32",
               spec: Optional[DataSpec] = None) -> GanStep:
    device = torch.device("cuda")
    torch.manual_seed(SEED)
    if model == "tinyconv":
        spec = spec or DataSpec("tiny", "image", (1, 16, 16), 0, 1024)
        G, D = TinyConvG(32, spec.shape), TinyConvD(spec.shape)
    else:
        spec = spec or DataSpec("tiny", "image", (1, 28, 28), 0, 1024)
        G, D = build_models(model_config(model, **({} if model == "mlp" else {"image_size": spec.shape[-1]})), spec)
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).requires_grad_(False) if ema else None
    loss_spec = build_loss(LossConfig(name=loss, gp_weight=gp, r1_gamma=r1, r1_every=r1_every))
    opt_G, opt_D = build_optimizers(OptimizerConfig(name="adam"), G, D)
    return GanStep(G, D, G_ema, loss_spec, opt_G, opt_D, StepSettings(n_critic, ema, True, precision), device)


def batches_for(step: GanStep, steps: int, n_critic: int) -> list:
    gen = torch.Generator().manual_seed(0)
    shape = (BATCH, *step.D.in_shape)
    return [[(torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8).cuda(), None) for _ in range(n_critic)]
            for _ in range(steps)]


def run(step_fn, batches) -> list[dict[str, float]]:
    out = []
    for i, b in enumerate(batches):
        stats = step_fn(b, i)
        out.append({k: float(v) for k, v in stats.items()})  # a sync per step: fine in a test
    return out


def losses(history) -> torch.Tensor:
    return torch.tensor([[h["loss/D"], h["loss/G"]] for h in history])


def assert_graph_matches_eager(tol: float = 1e-3, **options):
    n_critic = options.get("n_critic", 1)
    eager = build_step(**options)
    batches = batches_for(eager, CHECKED_STEPS, n_critic)
    ref = run(eager, batches)
    messages: list[str] = []
    graph_fn = fast.accelerate(build_step(**options), "graph", notify=messages.append)
    assert isinstance(graph_fn, fast.GraphStep)
    ours = run(graph_fn, batches)
    assert messages == [] and graph_fn.failed is None, messages
    assert graph_fn.graphs, "nothing was captured"
    torch.testing.assert_close(losses(ours), losses(ref), rtol=tol, atol=tol)
    for p, q in zip(graph_fn.step.G.parameters(), eager.G.parameters()):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)
    return graph_fn


@pytest.mark.parametrize("model", ["mlp", "tinyconv"])
def test_graph_replay_matches_eager_for_the_first_steps(model):
    """Warm-up steps are eager, then replays: same noise order (graph-safe RNG), same updates."""
    assert_graph_matches_eager(model=model, ema=0.99)


def test_graph_with_gradient_penalty_and_critic_steps():
    assert_graph_matches_eager(model="tinyconv", loss="wasserstein", gp=10.0, n_critic=3)


def test_lazy_r1_gets_its_own_graph():
    graph_fn = assert_graph_matches_eager(model="tinyconv", r1=1.0, r1_every=2)
    assert set(graph_fn.graphs) == {("r1",), ()}  # one graph per GanStep.variant


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_graph_runs_in_mixed_precision(precision):
    step_fn = fast.accelerate(build_step("tinyconv", precision=precision), "graph", channels_last=True)
    history = run(step_fn, batches_for(step_fn.step, CHECKED_STEPS, 1))
    assert step_fn.failed is None and step_fn.graphs
    assert all(math.isfinite(h["loss/D"]) and math.isfinite(h["loss/G"]) for h in history)


def test_channels_last_converts_conv_models_only():
    step = build_step("tinyconv", ema=0.9)
    fast.accelerate(step, "none", channels_last=True)
    weight = step.G.net[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert step.G_ema.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    messages: list[str] = []
    fast.accelerate(build_step("mlp"), "none", channels_last=True, notify=messages.append)
    assert messages == ["device.channels_last applies to conv models only; ignored for this model"]


def test_capture_failure_falls_back_once(monkeypatch):
    """A step that syncs the host (here: an .item() in D) cannot be captured: eager, one message."""
    step = build_step("tinyconv")
    original = step.D.forward_features

    def syncing(x, c=None):
        logits, feats = original(x, c)
        if torch.cuda.is_current_stream_capturing():
            logits.sum().item()
        return logits, feats

    step.D.forward_features = syncing
    messages: list[str] = []
    step_fn = fast.accelerate(step, "graph", notify=messages.append)
    history = run(step_fn, batches_for(step, CHECKED_STEPS, 1))
    assert len(messages) == 1 and messages[0].startswith("trainer.compile=graph: capture failed")
    assert step_fn.failed is not None and len(history) == CHECKED_STEPS


def test_train_command_with_graph_on_cuda(compose_train, tmp_path):
    from ganrun.commands.train import train

    cfg = compose_train(["dataset=ring8", "dataset.num_points=4000", "device=cuda", "trainer.compile=graph",
                         "trainer.max_steps=20", "trainer.batch_size=128", "trainer.log_every=5",
                         "trainer.sample_every=10", "device.precision=bf16", "logger.progress=none",
                         "logger.print_config=false", "logger.tensorboard=false"])
    result = train(cfg, tmp_path / "run")
    assert result["step"] == 20.0 and math.isfinite(result["loss/D"])


# every combination offered, on each conv model present: runs or falls back with a message, never crashes
CONV_MODELS = ["tinyconv"] + [m for m in ("dcgan", "wgan_gp") if m in MODELS]


@pytest.mark.parametrize("model", CONV_MODELS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", ["none", "graph", pytest.param("inductor", marks=pytest.mark.slow)])
def test_every_combination_trains(model, precision, channels_last, mode):
    spec = None if model == "tinyconv" else DataSpec("tiny", "image", (1, 64, 64), 0, 1024)
    options = dict(loss="wasserstein", gp=10.0, n_critic=2) if model == "wgan_gp" else {}
    step = build_step(model, precision=precision, spec=spec, **options)
    messages: list[str] = []
    step_fn = fast.accelerate(step, mode, channels_last=channels_last, notify=messages.append)
    history = run(step_fn, batches_for(step, 5, options.get("n_critic", 1)))
    assert all(math.isfinite(h["loss/D"]) for h in history)
    for text in messages:  # whatever fell back said so on one line
        assert text.startswith(("trainer.compile=", "device.channels_last")) and "\n" not in text
