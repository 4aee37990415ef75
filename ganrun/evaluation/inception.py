"""The FID Inception-v3 network (pool3, 2048-d), as pytorch-fid and torch-fidelity define it.

This is TensorFlow's 2015-12-05 Inception graph that the original FID code used, ported to PyTorch
by pytorch-fid (Apache-2.0): torchvision's Inception3 with 1008 classes, no aux head, and four
patched block types (FIDInceptionA/C/E_1 average-pool without counting padding, as TensorFlow
does; FIDInceptionE_2 uses *max* pooling in its pool branch, a quirk of that graph). Features are
the 2048-d global average pool after Mixed_7c ("pool3").

Weights are never downloaded: `load_fid_inception(path)` reads pytorch-fid's release file
`pt_inception-2015-12-05-6726825d.pth` (a plain state dict) from a local path with
`torch.load(weights_only=True)`. Without that file, ganrun's domain classifier is the feature
network.

Input handling follows pytorch-fid's image pipeline: images (N, C, H, W) in [-1, 1] (or uint8)
are quantized to the 256 uint8 levels (what saving as PNG does), scaled to [0, 1], grayscale is
tiled to 3 channels, bilinearly resized to 299×299 (F.interpolate, align_corners=False), then
mapped to [-1, 1] (2x − 1) as the network expects.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ganrun.errors import UserError

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
FEATURE_DIM = 2048
INPUT_SIZE = 299

_tv = torchvision.models.inception


class FIDInceptionA(_tv.InceptionA):
    """InceptionA whose pool branch averages without the zero padding (TensorFlow semantics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class FIDInceptionC(_tv.InceptionC):
    """InceptionC whose pool branch averages without the zero padding (TensorFlow semantics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b = self.branch7x7dbl_1(x)
        b = self.branch7x7dbl_2(b)
        b = self.branch7x7dbl_3(b)
        b = self.branch7x7dbl_4(b)
        branch7x7dbl = self.branch7x7dbl_5(b)
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class FIDInceptionE_1(_tv.InceptionE):
    """First InceptionE (Mixed_7b): pool branch averages without the zero padding."""

    pool = "avg"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "avg":
            pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionE_2(FIDInceptionE_1):
    """Second InceptionE (Mixed_7c): its pool branch uses max pooling (the FID graph's quirk)."""

    pool = "max"


class FIDInceptionV3(nn.Module):
    """Inception-v3 up to pool3 with the FID blocks; state-dict keys match pytorch-fid's weights file.

    features(x): (N, C, H, W) with C ∈ {1, 3}, uint8 or float in [-1, 1] → (N, 2048) float32.
    Built with torchvision's initialisation skipped; call `load_fid_inception` for real weights.
    """

    feature_dim = FEATURE_DIM

    def __init__(self) -> None:
        super().__init__()
        net = _tv.Inception3(
            num_classes=1008, aux_logits=False, transform_input=False, init_weights=False,
            inception_blocks=[_tv.BasicConv2d, FIDInceptionA, _tv.InceptionB, FIDInceptionC,
                              _tv.InceptionD, FIDInceptionE_1, _tv.InceptionAux],
        )
        net.Mixed_7c = FIDInceptionE_2(2048)
        # Same attribute names as torchvision/pytorch-fid, so the weights file loads strictly.
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                     "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "fc"):
            setattr(self, name, getattr(net, name))  # fc (1008 logits) is unused, kept for strict loading

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) uint8 or float [-1, 1] → (N, 3, 299, 299) float32 in [-1, 1], pytorch-fid style."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Inception expects (N, 1 or 3, H, W) images; got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.float()
        else:
            x = images.float().add(1.0).mul_(127.5).add_(0.5).floor_().clamp_(0.0, 255.0)  # uint8 levels
        x = x.div_(255.0)  # [0, 1], what torchvision's ToTensor gives pytorch-fid
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grayscale → RGB, as PIL .convert("RGB")
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return 2.0 * x - 1.0

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)  # (N, 3, 299, 299)
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 64, 73, 73)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # (N, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)  # ends at (N, 2048, 8, 8)
        return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)  # (N, 2048) pool3

    forward = features


def _missing(path, why: str) -> UserError:
    return UserError(
        f"FID Inception weights {why}: '{path}'. They come from pytorch-fid's release "
        f"({WEIGHTS_URL}); download {WEIGHTS_FILE} on a machine with network access and pass its "
        f"path as eval.inception_weights=/path/to/{WEIGHTS_FILE} (or use eval.features=domain)"
    )


def load_fid_inception(weights_path, device="cpu") -> FIDInceptionV3:
    """FIDInceptionV3 with pytorch-fid's weights from a local file, in eval mode, frozen, on device.

    Only reads `weights_path` (torch.load(weights_only=True)); raises UserError when it is unset,
    missing, unreadable, or not that state dict.
    """
    if weights_path in (None, ""):
        raise _missing(weights_path, "are not configured")
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise _missing(path, "not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise _missing(path, f"could not be read ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise _missing(path, "are not a state dict")
    model = FIDInceptionV3()
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError:
        raise _missing(path, "do not match the FID Inception network (tensor shapes differ)") from None
    if result.missing_keys or result.unexpected_keys:
        example = (result.missing_keys or result.unexpected_keys)[0]
        raise _missing(path, f"do not match the FID Inception network ({len(result.missing_keys)} missing and "
                             f"{len(result.unexpected_keys)} unexpected keys, e.g. {example})")
    model.requires_grad_(False)
    return model.eval().to(device)
