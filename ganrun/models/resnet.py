"""The SNGAN ResNet (Miyato et al. 2018): the 32×32 CIFAR-10 generator and discriminator, `model=resnet`.

Exact at the defaults (ngf = 256, ndf = 128, latent 128), as in the paper's Table 4 and its code
(chainer-gan-lib `sn_gan` ResNet):

G: z (N, latent)
   → Linear(latent → 4·4·ngf), reshape                             state ngf × 4 × 4
   → up block × 3: BN ReLU Up2 Conv3 BN ReLU Conv3  +  Up2 Conv1    state ngf × 8 × 8 → 16 × 16 → 32 × 32
   → BN ReLU Conv3(ngf → C) Tanh                                   out C × 32 × 32
   (Up2: nearest-neighbour 2× upsampling; Conv3: 3×3, padding 1; Conv1: the 1×1 shortcut conv)
D: x (N, C, 32, 32)
   → optimized block: Conv3 ReLU Conv3 Pool2  +  Pool2 Conv1        state ndf × 16 × 16
   → down block: ReLU Conv3 ReLU Conv3 Pool2  +  Conv1 Pool2        state ndf × 8 × 8
   → block × 2: ReLU Conv3 ReLU Conv3  +  identity                 state ndf × 8 × 8
   → ReLU, sum over positions                                      the features φ(x), N × ndf
   → Linear(ndf → 1)                                               a logit per image (no sigmoid)
   (Pool2: 2×2 average pooling.) Every convolution and linear layer has a bias.
Spectral norm on every D layer (`model.spectral_norm`, true by default). No BatchNorm in D, so the
gradient penalty works with it too. Init as the reference code: Glorot-uniform, gain √2 for the 3×3
convs of the blocks, gain 1 for the shortcuts, the linear layers and G's last conv; biases 0.

Conditional (`model.conditional=true`): G takes concat(z, Embedding(num_classes, embed_dim)(c)) as
the input of its linear layer (as cdcgan does, instead of the paper's conditional BatchNorm); D is a
projection discriminator (Miyato & Koyama 2018): logit = ψ(φ(x)) + ⟨Embedding(num_classes, ndf)(c), φ(x)⟩,
its embedding spectrally normalised with the other layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.config.schema import ModelConfig
from ganrun.config.validate import positive
from ganrun.errors import UserError
from ganrun.models.base import Discriminator, Generator, assert_shape, register_family
from ganrun.models.layers import apply_spectral_norm

SIZE = 32  # the only image size (pixels, square): three up blocks from 4×4, two poolings in D
UP_BLOCKS = 3


@dataclass
class ResNetConfig(ModelConfig):
    """`model=resnet` (the shared keys, plus these)."""

    latent_dim: int = 128  # size of z (SNGAN: 128)
    spectral_norm: bool = True  # spectral normalization on every D layer (SNGAN: on)
    ngf: int = 256  # G width: channels of the linear projection and of every residual block
    ndf: int = 128  # D width: channels of every residual block

    def check(self, spec=None) -> None:
        positive("model.ngf", self.ngf)
        positive("model.ndf", self.ndf)
        if spec is None:
            return
        if not spec.is_image:
            raise UserError(f"model={self.name} is convolutional and needs images; dataset={spec.name} is 2-D "
                            "points (use model=mlp)")
        _, h, w = spec.shape
        if (h, w) != (SIZE, SIZE):
            raise UserError(f"model={self.name} makes {SIZE}×{SIZE} images but dataset={spec.name} gives {h}×{w}; "
                            f"pass dataset.image_size={SIZE}")


def _conv(a: int, b: int, k: int, gain: float) -> nn.Conv2d:
    conv = nn.Conv2d(a, b, k, 1, k // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


def _linear(a: int, b: int) -> nn.Linear:
    linear = nn.Linear(a, b)
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class UpBlock(nn.Module):
    """BN ReLU Up2 Conv3 BN ReLU Conv3 + Up2 Conv1: (N, a, H, W) → (N, b, 2H, 2W)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(a), _conv(a, b, 3, math.sqrt(2))
        self.bn2, self.conv2 = nn.BatchNorm2d(b), _conv(b, b, 3, math.sqrt(2))
        self.shortcut = _conv(a, b, 1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")  # (N, a, 2H, 2W)
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))  # (N, b, 2H, 2W)
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    """ReLU Conv3 ReLU Conv3 [Pool2] + [Conv1 Pool2 | identity]; `optimized`: the first block of D,
    Conv3 ReLU Conv3 Pool2 + Pool2 Conv1 (no ReLU on the image)."""

    def __init__(self, a: int, b: int, down: bool, optimized: bool = False) -> None:
        super().__init__()
        self.down, self.optimized = down, optimized
        self.conv1, self.conv2 = _conv(a, b, 3, math.sqrt(2)), _conv(b, b, 3, math.sqrt(2))
        self.shortcut = _conv(a, b, 1, 1.0) if (down or a != b) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x if self.optimized else F.relu(x))
        h = self.conv2(F.relu(h))
        if self.down:
            h = F.avg_pool2d(h, 2)  # halves H, W
        if self.shortcut is None:
            return h + x
        if self.optimized:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class ResNetGenerator(Generator):
    def __init__(self, latent_dim: int, out_shape: tuple[int, int, int], ngf: int = 256,
                 num_classes: int = 0, embed_dim: int = 50) -> None:
        super().__init__(latent_dim, out_shape, num_classes)
        self.ngf = ngf
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.linear = _linear(latent_dim + (embed_dim if num_classes else 0), 4 * 4 * ngf)
        self.blocks = nn.Sequential(*(UpBlock(ngf, ngf) for _ in range(UP_BLOCKS)))  # 4×4 → 32×32
        self.bn = nn.BatchNorm2d(ngf)
        self.out = _conv(ngf, out_shape[0], 3, 1.0)

    def synthesize(self, z: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(c)], dim=1)  # (N, latent + embed)
        h = self.linear(z).view(z.shape[0], self.ngf, 4, 4)  # (N, ngf, 4, 4)
        h = self.blocks(h)  # (N, ngf, 32, 32)
        return torch.tanh(self.out(F.relu(self.bn(h))))  # (N, C, 32, 32)


class ResNetDiscriminator(Discriminator):
    def __init__(self, in_shape: tuple[int, int, int], ndf: int = 128, num_classes: int = 0) -> None:
        super().__init__(in_shape, num_classes)
        self.blocks = nn.Sequential(
            DownBlock(in_shape[0], ndf, down=True, optimized=True),  # ndf × 16 × 16
            DownBlock(ndf, ndf, down=True),  # ndf × 8 × 8
            DownBlock(ndf, ndf, down=False),
            DownBlock(ndf, ndf, down=False),
        )
        self.head = _linear(ndf, 1)
        self.embed = nn.Embedding(num_classes, ndf) if num_classes else None  # projection
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)

    def forward_features(self, x: torch.Tensor, c: Optional[torch.Tensor] = None):
        assert_shape(x, (None, *self.in_shape), "D input")
        h = F.relu(self.blocks(x)).sum((2, 3))  # (N, ndf): φ(x), global sum pooling
        logits = self.head(h).squeeze(1)  # (N,)
        if self.embed is not None:
            logits = logits + (self.embed(c) * h).sum(1)  # + ⟨embed(c), φ(x)⟩
        return logits, h


@register_family("resnet", schema=ResNetConfig)
def build_resnet(cfg: ResNetConfig, spec):
    num_classes = spec.num_classes if cfg.conditional else 0
    G = ResNetGenerator(cfg.latent_dim, spec.shape, cfg.ngf, num_classes, cfg.embed_dim)
    D = ResNetDiscriminator(spec.shape, cfg.ndf, num_classes)
    if cfg.spectral_norm:
        apply_spectral_norm(D)
        if D.embed is not None:
            D.embed = nn.utils.parametrizations.spectral_norm(D.embed)
    return G, D
