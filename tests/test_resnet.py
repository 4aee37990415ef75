"""`model=resnet`: the SNGAN ResNet layers and counts, its data rules, and its recipe through the CLI."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from tests.conftest import FAST

from ganrun.data import DataSpec
from ganrun.errors import UserError
from ganrun.models import build_models, count_parameters, model_config
from ganrun.models.resnet import DownBlock, UpBlock


def spec(channels: int, size: int = 32, classes: int = 10) -> DataSpec:
    return DataSpec(name="test", kind="image", shape=(channels, size, size), num_classes=classes, size=100)


def is_sn(m: nn.Module) -> bool:
    return nn.utils.parametrize.is_parametrized(m, "weight")


@pytest.mark.parametrize("channels, g_params, d_params", [(3, 4_276_739, 1_053_825), (1, 4_272_129, 1_051_265)])
def test_parameter_counts_at_the_defaults(channels, g_params, d_params):
    G, D = build_models(model_config("resnet"), spec(channels))
    assert (count_parameters(G), count_parameters(D)) == (g_params, d_params)


def test_layers_are_the_papers():
    G, D = build_models(model_config("resnet"), spec(3))
    assert (G.latent_dim, G.linear.in_features, G.linear.out_features) == (128, 128, 4 * 4 * 256)
    assert len(G.blocks) == 3 and all(isinstance(b, UpBlock) for b in G.blocks)
    for block in G.blocks:
        assert [(c.in_channels, c.out_channels, c.kernel_size) for c in (block.conv1, block.conv2, block.shortcut)] == [
            (256, 256, (3, 3)), (256, 256, (3, 3)), (256, 256, (1, 1))]
        assert isinstance(block.bn1, nn.BatchNorm2d) and isinstance(block.bn2, nn.BatchNorm2d)
    assert (G.out.in_channels, G.out.out_channels, G.out.kernel_size) == (256, 3, (3, 3))
    h = torch.randn(2, 256, 4, 4)
    assert [tuple((h := b(h)).shape[2:]) for b in G.blocks] == [(8, 8), (16, 16), (32, 32)]  # nearest 2× up

    blocks = list(D.blocks)
    assert [(b.optimized, b.down, b.shortcut is not None) for b in blocks] == [
        (True, True, True), (False, True, True), (False, False, False), (False, False, False)]
    assert all(isinstance(b, DownBlock) and b.conv1.out_channels == 128 for b in blocks)
    assert blocks[0].conv1.in_channels == 3 and D.head.in_features == 128
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Sigmoid)) for m in D.modules())
    layers = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 1 + 3 + 3 + 2 + 2 and all(map(is_sn, layers))  # spectral norm on every D layer


def test_discriminator_is_sum_pooled_features_and_a_linear_head():
    torch.manual_seed(0)
    _, D = build_models(model_config("resnet", ndf=16, spectral_norm=False), spec(1))
    x = torch.randn(3, 1, 32, 32)
    logits, feats = D.forward_features(x)
    h = D.blocks(x)
    assert h.shape == (3, 16, 8, 8)
    assert torch.allclose(feats, torch.relu(h).sum((2, 3)))
    assert torch.allclose(logits, D.head(feats).squeeze(1), atol=1e-5)
    assert not any(is_sn(m) for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_conditional_uses_an_embedding_in_g_and_projection_in_d():
    torch.manual_seed(0)
    G, D = build_models(model_config("resnet", conditional=True, ngf=16, ndf=16), spec(3, classes=4))
    G.eval(), D.eval()
    z = torch.randn(1, 128).repeat(2, 1)
    x = G(z, torch.tensor([0, 1]))
    assert x.shape == (2, 3, 32, 32) and not torch.allclose(x[0], x[1])
    c = torch.tensor([0, 3])
    logits, feats = D.forward_features(x, c)
    assert torch.allclose(logits, D.head(feats).squeeze(1) + (D.embed(c) * feats).sum(1), atol=1e-5)
    assert is_sn(D.embed)


def test_data_it_cannot_model_names_the_key():
    cfg = model_config("resnet")
    with pytest.raises(UserError, match=r"^model=resnet makes 32×32 images but dataset=test gives 28×28; "
                                        r"pass dataset.image_size=32$"):
        build_models(cfg, spec(1, 28))
    with pytest.raises(UserError, match=r"^model=resnet is convolutional and needs images; dataset=ring8"):
        build_models(cfg, DataSpec(name="ring8", kind="points", shape=(2,), size=100))
    with pytest.raises(UserError, match=r"^model\.ndf must be > 0, got 0$"):
        build_models(model_config("resnet", ndf=0), spec(3))


def test_resnet_trains_with_its_recipe_through_the_cli(ganrun, cli_env, idx_root, tmp_path):
    env = {**cli_env, "OMP_NUM_THREADS": "1"}
    out = ganrun("train", "model=resnet", "--cfg", "job", env=env)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert cfg["model"] == {**cfg["model"], "name": "resnet", "ngf": 256, "ndf": 128, "latent_dim": 128,
                            "spectral_norm": True}
    assert cfg["loss"]["name"] == "hinge" and cfg["loss"]["gp_weight"] == 0
    assert cfg["optimizer"]["name"] == "adam" and cfg["optimizer"]["lr"] == 2e-4
    assert cfg["optimizer"]["betas"] == [0.0, 0.9] and cfg["trainer"]["n_critic"] == 5
    assert cfg["dataset"]["image_size"] == 32  # 28×28 Fashion-MNIST resized to the model's size

    run = tmp_path / "run"
    out = ganrun("train", "model=resnet", f"dataset.root={idx_root}", *FAST, "logger.progress=none",
                 "trainer.max_steps=3", "trainer.batch_size=8", "trainer.num_sample_images=8", "model.ngf=32",
                 "model.ndf=32", f"hydra.run.dir={run}", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert (saved["model"]["name"], saved["loss"]["name"], saved["trainer"]["n_critic"]) == ("resnet", "hinge", 5)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert any(k.endswith("parametrizations.weight.original") for k in state["D"])  # spectral norm in D
    assert int(state["opt_D"]["state"][0]["step"]) == 5 * int(state["opt_G"]["state"][0]["step"]) == 15
    group = state["opt_D"]["param_groups"][0]
    assert group["lr"] == 2e-4 and tuple(group["betas"]) == (0.0, 0.9)
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
