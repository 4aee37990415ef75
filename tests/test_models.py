"""The model families: exact parameter counts, shapes at every size, init, and the stabilizer layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganrun.data import DataSpec
from ganrun.errors import UserError
from ganrun.models import build_models, count_parameters, model_config
from ganrun.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganrun.models.layers import MinibatchStdDev, apply_spectral_norm

FASHION = DataSpec(name="fashion_mnist", kind="image", shape=(1, 28, 28), num_classes=10, size=100)
RING = DataSpec(name="ring8", kind="points", shape=(2,), size=100)

# model=<name> as its YAML sets it (see configs/model/)
FAMILIES = {
    "mlp": dict(name="mlp"),
    "cgan": dict(name="cgan", conditional=True),
    "dcgan": dict(name="dcgan"),
    "cdcgan": dict(name="cdcgan", conditional=True),
    "wgan_gp": dict(name="wgan_gp", norm="layer"),
}
CONV = ["dcgan", "cdcgan", "wgan_gp"]
NARROW = {"mlp": {}, "cgan": {}, **{f: dict(ngf=8, ndf=8) for f in CONV}}  # cheap widths of each family


def image_spec(channels: int, size: int, classes: int = 10) -> DataSpec:
    return DataSpec(name="test", kind="image", shape=(channels, size, size), num_classes=classes, size=100)


def build(family: str, spec: DataSpec, **overrides):
    return build_models(model_config(**{**FAMILIES[family], **overrides}), spec)


# -- exact parameter counts --------------------------------------------------------------------

@pytest.mark.parametrize("family, g_params, d_params", [
    ("mlp", 1_489_936, 533_505),
    ("cgan", 1_503_236, 559_605),
])
def test_mlp_parameter_counts(family, g_params, d_params):
    G, D = build(family, FASHION)
    assert (count_parameters(G), count_parameters(D)) == (g_params, d_params)


@pytest.mark.parametrize("channels, g_params, d_params", [(3, 3_576_704, 2_765_568), (1, 3_574_656, 2_763_520)])
def test_dcgan64_parameter_counts(channels, g_params, d_params):
    G, D = build("dcgan", image_spec(channels, 64))
    assert (count_parameters(G), count_parameters(D)) == (g_params, d_params)
    # the WGAN-GP critic swaps BatchNorm for LayerNorm (per-channel affine): the same count
    G, C = build("wgan_gp", image_spec(channels, 64))
    assert (count_parameters(G), count_parameters(C)) == (g_params, d_params)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in C.modules())


def test_dcgan64_layers_are_the_papers():
    G, D = build("dcgan", image_spec(3, 64))
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.bias)
             for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convs == [(100, 512, (4, 4), (1, 1), (0, 0), None), (512, 256, (4, 4), (2, 2), (1, 1), None),
                     (256, 128, (4, 4), (2, 2), (1, 1), None), (128, 64, (4, 4), (2, 2), (1, 1), None),
                     (64, 3, (4, 4), (2, 2), (1, 1), None)]
    assert isinstance(G.net[-1], nn.Tanh)
    convs = [(m.in_channels, m.out_channels, m.stride, m.padding) for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 64, (2, 2), (1, 1)), (64, 128, (2, 2), (1, 1)), (128, 256, (2, 2), (1, 1)),
                     (256, 512, (2, 2), (1, 1)), (512, 1, (1, 1), (0, 0))]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == 3
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.Sigmoid) for m in D.modules())


def test_dcgan_widths_and_latent_are_configurable():
    G, D = build("dcgan", image_spec(1, 32), ngf=16, ndf=8, latent_dim=20)
    assert G.net[0].in_channels == 20 and G.net[0].out_channels == 64  # 4ngf at 32×32
    assert D.head.in_channels == 32  # 4ndf
    assert G(torch.randn(2, 20)).shape == (2, 1, 32, 32)


# -- shapes for every family, size and channel count ---------------------------------------------

@pytest.mark.parametrize("family", CONV)
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_conv_family_shapes(family, size, channels):
    spec = image_spec(channels, size)
    G, D = build(family, spec, ngf=8, ndf=8)
    z = torch.randn(4, G.latent_dim)
    c = torch.arange(4) if G.num_classes else None
    x = G(z, c)
    assert x.shape == (4, channels, size, size)
    assert x.abs().max() <= 1.0  # tanh
    logits, feats = D.forward_features(x, c)
    widest = 8 * (4 if size == 32 else 8)  # D's last block: 4ndf at 32×32, 8ndf at 64×64 (ndf = 8)
    assert logits.shape == (4,) and feats.shape == (4, widest * 4 * 4)
    assert D(x, c).shape == (4,)


@pytest.mark.parametrize("family", ["mlp", "cgan"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_mlp_family_shapes(family, shape):
    spec = DataSpec(name="test", kind="image", shape=shape, num_classes=10, size=100)
    G, D = build(family, spec)
    c = torch.arange(4) if family == "cgan" else None
    x = G(torch.randn(4, 100), c)
    assert x.shape == (4, *shape)
    assert D(x, c).shape == (4,)


def test_mlp_on_points_has_no_tanh():
    G, D = build("mlp", RING)
    assert G(torch.randn(4, 100)).shape == (4, 2)
    assert not isinstance(G.net[-1], nn.Tanh)
    assert D(torch.randn(4, 2)).shape == (4,)


def test_shape_checks_at_the_boundaries():
    G, D = build("dcgan", image_spec(1, 32), ngf=8, ndf=8)
    with pytest.raises(ValueError, match=r"G input z: expected shape \(None, 100\), got \(2, 50\)"):
        G(torch.randn(2, 50))
    with pytest.raises(ValueError, match=r"D input: expected shape \(None, 1, 32, 32\)"):
        D(torch.randn(2, 3, 32, 32))


# -- conditioning --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["cgan", "cdcgan"])
def test_conditional_models_use_the_label(family):
    spec = image_spec(1, 32)
    torch.manual_seed(0)
    G, D = build(family, spec, **NARROW[family])
    G.eval()
    D.eval()
    z = torch.randn(1, 100).repeat(2, 1)
    x = G(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])  # same z, another class: another image
    same = x[:1].repeat(2, 1, 1, 1)
    logits = D(same, torch.tensor([0, 1]))
    assert not torch.allclose(logits[0], logits[1])
    assert G.num_classes == D.num_classes == 10


def test_projection_discriminator_is_head_plus_inner_product():
    torch.manual_seed(0)
    D = DCGANDiscriminator((1, 32, 32), ndf=8, num_classes=3).eval()
    x, c = torch.randn(5, 1, 32, 32), torch.tensor([0, 1, 2, 1, 0])
    logits, feats = D.forward_features(x, c)
    h = D.features(x)
    expected = D.head(h).flatten() + (D.embed(c) * h.sum((2, 3))).sum(1)
    assert torch.allclose(logits, expected, atol=1e-6)


def test_conditional_needs_labels():
    with pytest.raises(UserError, match=r"model=cgan is conditional but dataset=ring8 has no class labels"):
        build("cgan", RING)
    unlabelled = DataSpec(name="folder", kind="image", shape=(3, 32, 32), size=10)
    with pytest.raises(UserError, match=r"model=cdcgan is conditional but dataset=folder has no class labels"):
        build("cdcgan", unlabelled)


# -- image size: the data decide, the model checks -------------------------------------------------

def test_conv_model_on_28px_data_says_which_key_to_set():
    with pytest.raises(UserError, match=r"model=dcgan makes 32×32 or 64×64 images but dataset=fashion_mnist "
                                        r"gives 28×28; pass dataset.image_size=32 or dataset.image_size=64"):
        build("dcgan", FASHION)


def test_conv_model_on_points_and_size_mismatch():
    with pytest.raises(UserError, match=r"model=wgan_gp is convolutional and needs images; dataset=ring8"):
        build("wgan_gp", RING)
    with pytest.raises(UserError, match=r"model.image_size=32 but dataset=test gives 64×64 images; "
                                        r"pass dataset.image_size=32"):
        build("dcgan", image_spec(1, 64), image_size=32)


# -- initialization and stabilizer layers --------------------------------------------------------

def test_dcgan_init_statistics():
    torch.manual_seed(0)
    G, D = build("dcgan", image_spec(3, 64))
    convs = [m.weight for net in (G, D) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat([w.flatten() for w in convs])
    assert weights.mean().abs() < 1e-3 and weights.std().item() == pytest.approx(0.02, rel=0.02)
    for w in convs:
        if w.numel() > 10_000:
            assert w.std().item() == pytest.approx(0.02, rel=0.1)
    bns = [m for net in (G, D) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    gamma = torch.cat([m.weight.detach() for m in bns])
    assert gamma.mean().item() == pytest.approx(1.0, abs=0.005)
    assert gamma.std().item() == pytest.approx(0.02, rel=0.15)
    assert all(torch.all(m.bias == 0) for m in bns)
    assert all(m.bias is None for net in (G, D) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


@pytest.mark.parametrize("make", [lambda: nn.Linear(40, 30), lambda: nn.Conv2d(8, 16, 4, 2, 1)], ids=["linear", "conv"])
def test_spectral_norm_bounds_top_singular_value(make):
    torch.manual_seed(0)  # the layer is built after seeding: its weights do not depend on what ran before
    layer = make()
    with torch.no_grad():
        layer.weight.mul_(5.0)  # start far from 1
    net = apply_spectral_norm(nn.Sequential(layer))
    x = torch.randn(4, 40) if isinstance(layer, nn.Linear) else torch.randn(4, 8, 8, 8)
    for _ in range(50):  # one power iteration per training-mode forward
        net(x)
    w = net[0].weight.flatten(1)  # (out, in·k·k), as spectral norm sees it
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("family", ["mlp", "dcgan", "cdcgan"])
def test_spectral_norm_option_wraps_every_d_layer(family):
    spec = image_spec(1, 32)
    _, D = build(family, spec, spectral_norm=True, **NARROW[family])
    layers = [m for m in D.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.Embedding))]
    assert layers and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in layers
                          if not (family == "mlp" and isinstance(m, nn.Embedding)))


def test_minibatch_std_adds_one_feature_or_channel():
    layer = MinibatchStdDev(group_size=4)
    maps = torch.randn(8, 5, 4, 4)
    out = layer(maps)
    assert out.shape == (8, 6, 4, 4) and torch.equal(out[:, :5], maps)
    assert all(out[i, 5].unique().numel() == 1 for i in range(8))  # one value per sample's map
    vecs = torch.randn(8, 7)
    out = layer(vecs)
    assert out.shape == (8, 8)
    # a collapsed batch (all samples equal) reads as zero spread
    same = layer(torch.ones(8, 3))
    assert same[:, 3].abs().max() < 1e-3
    # in the models: one more input to D's last layer
    _, D = build("dcgan", image_spec(1, 32), minibatch_std=True, ngf=8, ndf=8)
    assert D.head.in_channels == 32 + 1 and D(torch.randn(4, 1, 32, 32)).shape == (4,)
    _, D = build("mlp", FASHION, minibatch_std=True)
    assert D.head.in_features == 256 + 1


def test_a_conditional_minibatch_std_measures_the_spread_within_each_class():
    """One image per class (G ignoring z) reads as no spread to a conditional D, though the
    classes differ; class-mixed groups of 4 would read that batch as diverse."""
    c = torch.arange(12) // 4  # classes 0, 0, 0, 0, 1, ...: the strided groups of 4 mix them
    collapsed = torch.randn(3, 5, 4, 4)[c]  # every sample of a class the same map
    per_class = MinibatchStdDev(num_classes=3)(collapsed, c)[:, 5]
    assert per_class.abs().max() < 1e-3
    assert MinibatchStdDev()(collapsed)[:, 5].min() > 0.1  # groups of 4 mix the classes
    varied = collapsed + torch.randn(12, 1, 1, 1) * torch.tensor([0.0, 1.0, 3.0])[c].view(12, 1, 1, 1)
    spread = MinibatchStdDev(num_classes=3)(varied, c)[:, 5, 0, 0]
    assert spread[c == 0].max() < 1e-3 and (spread[c == 2] > spread[c == 1]).all()  # each class its own
    assert torch.equal(spread[c == 1], spread[c == 1][:1].expand(4))  # one value per class
    # the conditional families group by class; unconditional ones and packed MLPs cannot
    for family, kwargs in (("cdcgan", NARROW["cdcgan"]), ("cgan", {})):
        _, D = build(family, image_spec(1, 32), minibatch_std=True, **kwargs)
        assert D.mbstd.num_classes == 10
        torch.manual_seed(0)
        x = torch.randn(3, 1, 32, 32)[c]
        ones = torch.ones(12, dtype=torch.long)
        seen = {}
        D.head.register_forward_hook(lambda m, i, o: seen.update(h=i[0]))
        D.eval()(x, c)
        spread_seen = seen["h"].flatten(1)[:, -1]
        D(x, ones)  # the same images under one label: the classes now differ within it
        assert seen["h"].flatten(1)[:, -1].min() > 5 * spread_seen.max()  # (small features at init)
    _, D = build("mlp", image_spec(1, 32), minibatch_std=True)
    assert D.mbstd.num_classes == 0
    _, D = build("cgan", image_spec(1, 32), minibatch_std=True, pack=2)
    assert D.mbstd.num_classes == 0


def test_generator_is_standalone():
    """The classes can be used without the builder (for notebooks)."""
    G = DCGANGenerator(16, (3, 64, 64), ngf=4)
    assert G(torch.randn(3, 16)).shape == (3, 3, 64, 64)
