"""DCGAN (Radford et al. 2016), its conditional form (`cdcgan`) and the WGAN-GP critic (`wgan_gp`).

One builder and one schema (`DCGANConfig`), three config names; the YAML of each name sets what
differs (`conditional`, `norm`).
Exact at the default widths (ngf = ndf = 64, latent 100), 64×64:

G: z (N, latent, 1, 1)
   → ConvT(latent → 8ngf, 4, 1, 0) BN ReLU     state 8ngf × 4 × 4   (always 1×1 → 4×4)
   → ConvT(8ngf → 4ngf, 4, 2, 1) BN ReLU       state 4ngf × 8 × 8
   → ConvT(4ngf → 2ngf, 4, 2, 1) BN ReLU       state 2ngf × 16 × 16
   → ConvT(2ngf → ngf, 4, 2, 1) BN ReLU        state ngf × 32 × 32
   → ConvT(ngf → C, 4, 2, 1) Tanh              out C × 64 × 64
   3,576,704 parameters for C = 3 (3,574,656 for C = 1).
D: x (N, C, 64, 64)
   → Conv(C → ndf, 4, 2, 1) LReLU(0.2)         state ndf × 32 × 32
   → Conv(ndf → 2ndf, 4, 2, 1) norm LReLU      state 2ndf × 16 × 16
   → Conv(2ndf → 4ndf, 4, 2, 1) norm LReLU     state 4ndf × 8 × 8
   → Conv(4ndf → 8ndf, 4, 2, 1) norm LReLU     state 8ndf × 4 × 4   (the features φ(x))
   → [minibatch std: +1 channel] → Conv(8ndf → 1, 4, 1, 0)   a logit per image (no sigmoid)
   2,765,568 parameters for C = 3 with BatchNorm (2,763,520 for C = 1).
Every convolution is bias-free, as in the reference implementation. At 32×32 both nets have
one stride-2 block fewer (G starts at 4ngf, D ends at 4ndf); the first ConvT still maps 1×1 to
4×4 and the last conv of D still maps 4×4 to 1×1. Weights get the DCGAN init: conv N(0, 0.02),
BatchNorm weight N(1, 0.02) and bias 0.

`model.norm` is D's normalization: `batch` (DCGAN), `layer` (LayerNorm over C×H×W per sample
with a per-channel affine, as in Gulrajani et al.'s code: `GroupNorm(1, C)`, same parameter count
as BatchNorm) or `none`. The WGAN-GP critic (`model=wgan_gp`) uses `layer`, because BatchNorm
mixes the samples of a batch and so breaks the per-sample gradient penalty.

Conditional (`model=cdcgan`, or `model.conditional=true` on any of the three names):
- G takes concat(z, Embedding(num_classes, embed_dim)(c)) as its 1×1 input, as the MLP cGAN does.
- D is a projection discriminator (Miyato & Koyama 2018): logit = ψ(φ(x)) + ⟨Embedding(num_classes,
  8ndf)(c), Σ_hw φ(x)⟩, with ψ the unconditional head above and φ(x) the 8ndf × 4 × 4 features
  summed over positions. The embedding is initialised N(0, 0.02) and spectrally normalised with
  the other layers when `model.spectral_norm=true`.
- `model.minibatch_std=true` takes the std within each class of the batch (`MinibatchStdDev`
  with `num_classes`): groups that mix classes read a G that draws one image per class as diverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ganrun.config.schema import ModelConfig
from ganrun.config.validate import one_of, positive
from ganrun.errors import UserError
from ganrun.models.base import Discriminator, Generator, assert_shape, register_family
from ganrun.models.layers import MinibatchStdDev, apply_spectral_norm, dcgan_init

SIZES = (32, 64)  # supported image sizes (pixels, square)

NORMS = {
    "batch": nn.BatchNorm2d,
    "layer": lambda ch: nn.GroupNorm(1, ch),  # LayerNorm over (C, H, W), per-channel affine
    "none": lambda ch: nn.Identity(),
}


@dataclass
class DCGANConfig(ModelConfig):
    """`model=dcgan`, `cdcgan` and `wgan_gp` (the shared keys, plus these)."""

    ngf: int = 64  # G width: channels of its last hidden block (8·ngf in the first at 64×64)
    ndf: int = 64  # D width: channels of its first block (8·ndf in the last at 64×64)
    image_size: Optional[int] = None  # 32 or 64 to assert the data's size; None: the data's size
    norm: str = "batch"  # D normalization: batch, layer (LayerNorm over C×H×W) or none
    minibatch_std: bool = False  # minibatch standard-deviation channel before D's last conv

    def check(self, spec=None) -> None:
        positive("model.ngf", self.ngf)
        positive("model.ndf", self.ndf)
        if self.image_size is not None:
            one_of("model.image_size", self.image_size, SIZES)
        one_of("model.norm", self.norm, NORMS)
        if spec is not None:
            check_images(self, spec)


def widths(size: int, base: int) -> list[int]:
    """Channel widths of the hidden 4×4 … size/2 maps, widest first: 64 → [8b, 4b, 2b, b]."""
    return [base * 2**i for i in reversed(range(int(math.log2(size)) - 2))]


class DCGANGenerator(Generator):
    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], ngf: int = 64,
                 num_classes: int = 0, embed_dim: int = 50) -> None:
        super().__init__(latent_dim, out_shape, num_classes)
        channels, size, _ = out_shape
        w = widths(size, ngf)
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        in_ch = latent_dim + (embed_dim if num_classes else 0)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_ch, w[0], 4, 1, 0, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU()]  # w0 × 4 × 4
        for a, b in zip(w, w[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]  # doubles H, W
        layers += [nn.ConvTranspose2d(w[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]  # C × size × size
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def synthesize(self, z: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(c)], dim=1)  # (N, latent + embed)
        return self.net(z[:, :, None, None])  # (N, C, size, size)


class DCGANDiscriminator(Discriminator):
    def __init__(self, in_shape: tuple[int, int, int], ndf: int = 64, norm: str = "batch",
                 num_classes: int = 0, minibatch_std: bool = False) -> None:
        super().__init__(in_shape, num_classes)
        channels, size, _ = in_shape
        w = widths(size, ndf)[::-1]  # [ndf, 2ndf, ...]
        layers: list[nn.Module] = [nn.Conv2d(channels, w[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for a, b in zip(w, w[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), NORMS[norm](b), nn.LeakyReLU(0.2)]  # halves H, W
        self.features = nn.Sequential(*layers)  # (N, w[-1], 4, 4)
        self.mbstd = MinibatchStdDev(num_classes=num_classes) if minibatch_std else None  # within class when conditional
        self.head = nn.Conv2d(w[-1] + (1 if minibatch_std else 0), 1, 4, 1, 0, bias=False)  # 4×4 → 1×1
        self.embed = nn.Embedding(num_classes, w[-1]) if num_classes else None  # projection
        dcgan_init(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward_features(self, x: torch.Tensor, c: Optional[torch.Tensor] = None):
        assert_shape(x, (None, *self.in_shape), "D input")
        h = self.features(x)  # (N, 8ndf, 4, 4)
        logits = self.head(h if self.mbstd is None else self.mbstd(h, c)).flatten()  # (N,)
        if self.embed is not None:
            logits = logits + (self.embed(c) * h.sum((2, 3))).sum(1)  # + ⟨embed(c), Σ_hw φ(x)⟩
        return logits, h.flatten(1)


def check_images(cfg, spec) -> None:
    """A conv family needs square 32×32 or 64×64 images; say which key fixes it when not."""
    if not spec.is_image:
        raise UserError(f"model={cfg.name} is convolutional and needs images; dataset={spec.name} is 2-D "
                        "points (use model=mlp)")
    _, h, w = spec.shape
    if h != w or h not in SIZES:
        raise UserError(f"model={cfg.name} makes 32×32 or 64×64 images but dataset={spec.name} gives {h}×{w}; "
                        "pass dataset.image_size=32 or dataset.image_size=64")
    if cfg.image_size is not None and cfg.image_size != h:
        raise UserError(f"model.image_size={cfg.image_size} but dataset={spec.name} gives {h}×{w} images; "
                        f"pass dataset.image_size={cfg.image_size} (or leave model.image_size=null)")


@register_family("dcgan", "cdcgan", "wgan_gp", schema=DCGANConfig)
def build_dcgan(cfg: DCGANConfig, spec):
    num_classes = spec.num_classes if cfg.conditional else 0
    G = DCGANGenerator(cfg.latent_dim, spec.shape, cfg.ngf, num_classes, cfg.embed_dim)
    D = DCGANDiscriminator(spec.shape, cfg.ndf, cfg.norm, num_classes, cfg.minibatch_std)
    if cfg.spectral_norm:
        apply_spectral_norm(D)
        if D.embed is not None:
            D.embed = nn.utils.parametrizations.spectral_norm(D.embed)
    return G, D
