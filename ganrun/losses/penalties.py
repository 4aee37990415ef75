"""Regularizers on D's gradients, per sample, pure tensor work (double backward included).

Both build their graph with `create_graph=True` so the penalty's own gradient reaches D's
weights; both return the per-sample penalty (N,), so the caller chooses the reduction.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

Critic = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def _input_grad_norm2(D: Critic, x: torch.Tensor, c: Optional[torch.Tensor]) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    out = D(x, c)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.flatten(1).square().sum(1)  # (N,) ‖∇ₓD(x)‖²


def gradient_penalty(D: Critic, real: torch.Tensor, fake: torch.Tensor, c: Optional[torch.Tensor] = None,
                     center: float = 1.0, eps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(‖∇D(x̂)‖₂ - center)² on x̂ = εx + (1-ε)G(z), ε ~ U(0, 1) per sample (Gulrajani et al. 2017).

    `eps` (N, 1, ...): the interpolation weights, when the caller draws them (several ranks)."""
    if eps is None:
        eps = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    interp = torch.lerp(fake.detach(), real.detach(), eps)
    norm = (_input_grad_norm2(D, interp, c) + 1e-12).sqrt()
    return (norm - center).square()


def r1_penalty(D: Critic, real: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
    """‖∇D(x)‖² on real data (Mescheder et al. 2018); the caller multiplies by γ/2."""
    return _input_grad_norm2(D, real, c)
