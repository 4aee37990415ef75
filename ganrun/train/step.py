"""One GAN update: n_critic D phases, then one G phase. Pure tensor work.

No `.item()`, no host sync, no Python branching on tensor values: the statistics come back as
0-d device tensors, and the loop reads them every `log_every` steps. Branches here depend only
on configuration and the host-side step counter (lazy R1), so the step can be captured as a
CUDA graph or compiled.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ganrun.data import to_model_range
from ganrun.losses import LossSpec, gradient_penalty, r1_penalty

Batch = tuple[torch.Tensor, Optional[torch.Tensor]]  # (data in storage dtype, labels or None)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StepSettings:
    n_critic: int  # D updates per G update
    ema_decay: float  # 0: no EMA
    flip: bool  # random horizontal flips of reals
    precision: str  # fp32, bf16, fp16


def total_grad_norm(module: nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


class GanStep:
    """Callable: `step(batches, step_index)` → dict of 0-d stat tensors (detached)."""

    def __init__(self, G: nn.Module, D: nn.Module, G_ema: Optional[nn.Module], loss: LossSpec,
                 opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer, settings: StepSettings,
                 device: torch.device) -> None:
        self.G, self.D, self.G_ema = G, D, G_ema
        self.loss = loss
        self.opt_G, self.opt_D = opt_G, opt_D
        self.settings = settings
        self.device = device
        dtype = PRECISIONS[settings.precision]
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
        fp16 = settings.precision == "fp16"
        self.scaler_D = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_G = torch.amp.GradScaler(device.type, enabled=fp16)

    # -- helpers -------------------------------------------------------------------------------

    def _reals(self, batch: Batch) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x, y = batch
        x = to_model_range(x)
        if self.settings.flip and x.ndim == 4:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(3), x)
        return x, y

    def _noise(self, n: int, c: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """z, and labels for a conditional G: `c` when given (the reals' labels), else uniform."""
        z = torch.randn(n, self.G.latent_dim, device=self.device)
        if not self.G.num_classes:
            return z, None
        return z, c if c is not None else torch.randint(self.G.num_classes, (n,), device=self.device)

    def _d_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.loss.instance_noise > 0:
            x = x + self.loss.instance_noise * torch.randn_like(x)
        return x

    # -- the update ----------------------------------------------------------------------------

    def __call__(self, batches: list[Batch], step_index: int) -> dict[str, torch.Tensor]:
        assert len(batches) == self.settings.n_critic
        G, D, loss = self.G, self.D, self.loss
        stats: dict[str, torch.Tensor] = {}

        # D phase(s): G frozen, fakes detached; conditional fakes take the reals' labels, so D sees
        # the data's class balance and the gradient penalty interpolates within one class
        G.requires_grad_(False)
        D.requires_grad_(True)
        for batch in batches:
            real, c_real = self._reals(batch)
            z, c_fake = self._noise(real.shape[0], c_real)
            with self.autocast():
                fake = G(z, c_fake)
                real_logits = D(self._d_input(real), c_real).float()
                fake_logits = D(self._d_input(fake), c_fake).float()
            d_loss = loss.objective.d_loss(real_logits, fake_logits, loss.real_label, loss.fake_label)
            total = d_loss
            if loss.gp_weight > 0:
                with self.autocast():
                    gp = gradient_penalty(D, real, fake.float(), c_real).float().mean()
                total = total + loss.gp_weight * gp
                stats["D/gp"] = gp.detach()
            if loss.r1_gamma > 0 and step_index % loss.r1_every == 0:
                with self.autocast():
                    r1 = r1_penalty(D, real, c_real).float().mean()
                # lazy regularization: scale by the interval so the average strength is unchanged
                total = total + (loss.r1_gamma / 2) * loss.r1_every * r1
                stats["D/r1"] = r1.detach()
            self.opt_D.zero_grad(set_to_none=True)
            self.scaler_D.scale(total).backward()
            self.scaler_D.unscale_(self.opt_D)
            stats["grad_norm/D"] = total_grad_norm(D)
            self.scaler_D.step(self.opt_D)
            self.scaler_D.update()

        stats["loss/D"] = d_loss.detach()
        stats["D/D(x)"] = torch.sigmoid(real_logits).mean().detach()
        stats["D/D(G(z))"] = torch.sigmoid(fake_logits).mean().detach()
        stats["D/acc_real"] = (real_logits > 0).float().mean()
        stats["D/acc_fake"] = (fake_logits < 0).float().mean()
        stats["D/wasserstein"] = (real_logits.mean() - fake_logits.mean()).detach()

        # G phase: D frozen
        G.requires_grad_(True)
        D.requires_grad_(False)
        z, c_fake = self._noise(real.shape[0])
        with self.autocast():
            fake = G(z, c_fake)
            fake_logits, fake_feats = D.forward_features(self._d_input(fake), c_fake)
        g_loss = loss.objective.g_loss(fake_logits.float())
        total = g_loss
        if loss.feature_matching > 0:
            with torch.no_grad(), self.autocast():
                _, real_feats = D.forward_features(self._d_input(real), c_real)
            fm = F.mse_loss(fake_feats.float().mean(0), real_feats.float().mean(0))
            total = total + loss.feature_matching * fm
            stats["loss/feature_matching"] = fm.detach()
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler_G.scale(total).backward()
        self.scaler_G.unscale_(self.opt_G)
        stats["grad_norm/G"] = total_grad_norm(G)
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        D.requires_grad_(True)
        stats["loss/G"] = g_loss.detach()

        # EMA of G's weights; buffers (BatchNorm statistics) are copied
        if self.G_ema is not None:
            with torch.no_grad():
                ema_params = list(self.G_ema.parameters())
                torch._foreach_lerp_(ema_params, list(G.parameters()), 1.0 - self.settings.ema_decay)
                for b_ema, b in zip(self.G_ema.buffers(), G.buffers()):
                    b_ema.copy_(b)
        return stats
