"""The pieces of multi-process training, in process: sharding, shared draws, sync BN, config rules."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from ganrun.data.base import ArrayDataset
from ganrun.data.loader import BatchSource
from ganrun.errors import UserError
from ganrun.train.distributed import Dist, Ranks, ranks_from_env


def _dataset(n: int = 50) -> ArrayDataset:
    from ganrun.data import DataSpec

    spec = DataSpec(name="t", kind="points", shape=(1,), num_classes=0, size=n)
    return ArrayDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), None, spec)


def test_rank_shards_are_disjoint_and_make_up_the_one_process_batch():
    one = BatchSource(_dataset(), 8, torch.device("cpu"), seed=3)
    ranks = [BatchSource(_dataset(), 8, torch.device("cpu"), seed=3, rank=r, world_size=2) for r in range(2)]
    for _ in range(14):  # past two epochs (6 global batches each)
        x, _ = one.next()
        parts = [s.next()[0] for s in ranks]
        assert [len(p) for p in parts] == [4, 4]
        assert torch.equal(torch.cat(parts), x)
        assert not set(parts[0].flatten().tolist()) & set(parts[1].flatten().tolist())
    # the state is the same on every rank and for any world size: a checkpoint resumes on another count
    state = ranks[0].state_dict()
    for other in (ranks[1].state_dict(), one.state_dict()):
        assert (other["epoch"], other["position"]) == (state["epoch"], state["position"])
        assert torch.equal(other["generator"], state["generator"])
    resumed = [BatchSource(_dataset(), 8, torch.device("cpu"), seed=99, rank=r, world_size=4) for r in range(4)]
    for s in resumed:
        s.load_state_dict(state)
    assert torch.equal(torch.cat([s.next()[0] for s in resumed]), one.next()[0])


def test_shared_draws_slice_one_global_draw():
    torch.manual_seed(5)
    full = torch.randn(6, 3)
    flips = torch.rand(6, 1)
    labels = torch.randint(10, (6,))
    for r in range(2):
        torch.manual_seed(5)
        d = Dist(rank=r, world_size=2)
        assert torch.equal(d.randn(3, 3, device=torch.device("cpu")), full[3 * r : 3 * r + 3])
        assert torch.equal(d.rand(3, 1, device=torch.device("cpu")), flips[3 * r : 3 * r + 3])
        assert torch.equal(d.randint(10, 3, device=torch.device("cpu")), labels[3 * r : 3 * r + 3])
    torch.manual_seed(5)
    assert torch.equal(Dist().randn(6, 3, device=torch.device("cpu")), full)  # one process: the plain draw


def test_sync_bn_keeps_batchnorm_state_dict_and_is_batchnorm_alone():
    from ganrun.train.sync_bn import GlobalBatchNorm, convert

    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)))
    plain = {k: v.clone() for k, v in net.state_dict().items()}
    convert(net)
    assert isinstance(net[1], GlobalBatchNorm) and isinstance(net[2][1], GlobalBatchNorm)
    assert net.state_dict().keys() == plain.keys()
    ref = nn.BatchNorm1d(4)
    x = torch.randn(16, 4)
    assert torch.allclose(net[1](x), ref(x))  # no process group: exactly BatchNorm


def _bn_worker(rank: int, port: int, x: torch.Tensor, folder: str) -> None:
    import torch.distributed as td

    from ganrun.train.sync_bn import GlobalBatchNorm

    td.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    bn = GlobalBatchNorm(3)
    part = x[rank * 4 : rank * 4 + 4].clone().requires_grad_(True)
    y = bn(part)
    (y.square() * torch.arange(1.0, 4.0).view(1, 3, 1, 1)).sum().backward()
    torch.save((y.detach(), part.grad, bn.weight.grad.clone(), bn.running_var.clone()), f"{folder}/{rank}.pt")
    td.destroy_process_group()


@pytest.mark.slow  # ~12 s; the CLI parity test (model.sync_bn=true, a BatchNorm G) covers it too
def test_sync_bn_over_two_gloo_ranks_matches_batchnorm_on_the_whole_batch(tmp_path):
    import multiprocessing as mp

    from ganrun.train.spawn import free_port

    x = torch.randn(8, 3, 2, 2)
    port = free_port()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_bn_worker, args=(r, port, x, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    out = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    ref = nn.BatchNorm2d(3)
    whole = x.clone().requires_grad_(True)
    y = ref(whole)
    (y.square() * torch.arange(1.0, 4.0).view(1, 3, 1, 1)).sum().backward()
    assert torch.allclose(torch.cat([out[0][0], out[1][0]]), y, atol=1e-5)
    assert torch.allclose(torch.cat([out[0][1], out[1][1]]), whole.grad, atol=1e-4)
    assert torch.allclose(out[0][2] + out[1][2], ref.weight.grad, atol=1e-4)  # summed by the grad all-reduce
    assert torch.allclose(out[0][3], ref.running_var, atol=1e-6)


def test_ranks_from_the_environment():
    assert ranks_from_env({}) is None
    assert ranks_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Ranks(3, 1, 4, "torchrun")


@pytest.mark.parametrize("overrides, message", [
    (["trainer.devices=3", "trainer.batch_size=8"], r"trainer.batch_size=8 \(the global batch\) must be a multiple "
                                                    r"of trainer.devices=3"),
    (["trainer.devices=0"], r"trainer.devices"),
    (["trainer.devices=2", "trainer.compile=graph"], r"trainer.compile=graph .* trainer.devices > 1"),
])
def test_devices_rules(compose_train, overrides, message):
    from omegaconf import OmegaConf

    from ganrun.config.validate import validate

    with pytest.raises(UserError, match=message):
        validate(OmegaConf.to_object(compose_train(overrides)))


def test_batch_size_help_says_it_is_global():
    from ganrun.config.schema import TrainerConfig  # noqa: F401  the field's comment feeds --help
    import inspect

    import ganrun.config.schema as schema

    line = next(l for l in inspect.getsource(schema).splitlines() if l.strip().startswith("batch_size: int"))
    assert "global" in line
    assert "global" in open(os.path.join(os.path.dirname(schema.__file__), "..", "..", "configs", "trainer",
                                         "default.yaml")).read().split("batch_size:")[1].splitlines()[0]


def test_the_steps_draws_on_each_rank_are_its_slice_of_the_one_process_draws(monkeypatch):
    """Flips, z, labels, instance noise and the gradient penalty's weights: rank r of 2 draws
    rows r·n … (r+1)·n of what one process draws for the global batch of 2n (same RNG state)."""
    from ganrun.config.schema import OptimizerConfig
    from ganrun.data import DataSpec
    from ganrun.losses import DInputs, LossConfig, build_loss
    from ganrun.losses.regularizers import gradient_penalty as gp_module
    from ganrun.models import build_models, model_config
    from ganrun.optim import build_optimizers
    from ganrun.train.step import GanStep, StepSettings

    spec = DataSpec(name="tiny", kind="image", shape=(1, 4, 4), num_classes=10, size=64)
    torch.manual_seed(0)
    G, D = build_models(model_config("mlp", conditional=True, dropout=0.0), spec)  # labels are drawn too
    opt_G, opt_D = build_optimizers(OptimizerConfig(name="adam"), G, D)
    loss = build_loss(LossConfig(name="wasserstein", gp_weight=10.0, instance_noise=0.1))
    cpu, n = torch.device("cpu"), 4
    x = torch.randint(0, 256, (2 * n, *spec.shape), dtype=torch.uint8)

    def draws(dist: Dist, batch: torch.Tensor) -> list[torch.Tensor]:
        torch.manual_seed(7)
        step = GanStep(G, D, None, loss, opt_G, opt_D, StepSettings(1, 0.0, True, "fp32"), cpu, dist)
        real, _ = step._reals((batch, None))  # flips
        z, c = step._noise(len(batch))  # z and uniform labels
        noisy = step._d_input(real)  # instance noise
        seen = {}
        monkeypatch.setattr(gp_module, "gradient_penalty", lambda *a, eps, **k: seen.setdefault("eps", eps).sum())
        loss.get("gradient_penalty").penalty(DInputs(D, real, real, c, c, step.autocast, dist.rand))
        return [real, z, c, noisy - real, seen["eps"]]  # the last: the penalty's interpolation weights

    one = draws(Dist(), x)
    for r in (1, 0):  # rank 1 first: a draw of n (not 2n) rows would give it rank 0's rows
        mine = draws(Dist(rank=r, world_size=2), x[r * n : (r + 1) * n])
        for name, a, b in zip(("flips", "z", "labels", "instance noise", "gp eps"), mine, one):
            assert torch.allclose(a, b[r * n : (r + 1) * n]), name
