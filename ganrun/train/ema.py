"""The EMA of G's weights, with StyleGAN2-ADA's ramp-up (Karras et al. 2020, training_loop.py).

`trainer.ema_decay` d is the per-step decay once training is under way: G_ema ← β·G_ema + (1-β)·G,
β = d. Its half-life in images is h = B·ln(0.5)/ln(d) for B images per step. With
`trainer.ema_rampup` r > 0 the half-life is capped at r times the images seen before this step,
so early G_ema follows G closely instead of averaging in the random init:

    h_t = min(h, r · nimg_t)        β_t = 0.5 ** (B / max(h_t, 1e-8))

(β_0 = 0: the first update copies G; β_t = 0.5^(1/(r·t)) until it reaches d, after
t = h / (r·B) steps.) nimg_t is a device counter advanced inside the update, so the update is
pure tensor work and a captured CUDA graph replays it with the right β every step. BatchNorm
buffers are copied, not averaged.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def half_life_images(decay: float, batch_size: int) -> float:
    """Images over which an EMA of per-step decay `decay` halves an old weight's share."""
    return batch_size * math.log(0.5) / math.log(decay)


class EmaUpdate:
    """Callable: `update()` moves G_ema towards G by one step (no host sync)."""

    def __init__(self, G_ema: nn.Module, G: nn.Module, decay: float, rampup: float, batch_size: int,
                 start_nimg: int = 0) -> None:
        if rampup > 0 and batch_size <= 0:
            raise ValueError("the EMA ramp-up counts images: give batch_size > 0")
        self.G_ema, self.G = G_ema, G
        self.decay, self.rampup, self.batch_size = decay, rampup, batch_size
        device = next(G.parameters()).device
        # listed once (the per-step walk of the module tree cost more than the lerp on a small G);
        # load_state_dict copies into these same tensors
        self._ema, self._params = list(G_ema.parameters()), list(G.parameters())
        self._buffers = list(zip(G_ema.buffers(), G.buffers()))
        self.half_life = half_life_images(decay, batch_size) if rampup > 0 else math.inf
        self.nimg = torch.full((), float(start_nimg), dtype=torch.float64, device=device)  # images seen

    def beta(self) -> torch.Tensor:
        """This step's β as a 0-d float64 device tensor."""
        h = torch.clamp(self.nimg * self.rampup, max=self.half_life).clamp(min=1e-8)
        return torch.pow(0.5, self.batch_size / h)

    @torch.no_grad()
    def __call__(self) -> None:
        ema, params = self._ema, self._params
        if self.rampup > 0:
            beta = self.beta().to(ema[0].dtype)
            torch._foreach_lerp_(ema, params, 1.0 - beta)
            self.nimg.add_(self.batch_size)
        else:
            torch._foreach_lerp_(ema, params, 1.0 - self.decay)
        for b_ema, b in self._buffers:
            b_ema.copy_(b)
