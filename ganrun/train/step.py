"""One GAN update: the phases D × n_critic, D_reg (lazy, every k steps), G, then the EMA of G.
Pure tensor work.

No `.item()`, no host sync, no Python branching on tensor values: the statistics come back as
0-d device tensors, and the loop reads them every `log_every` steps. Branches here depend only
on configuration and the host-side step counter (lazy regularizers), so the step can be captured
as a CUDA graph or compiled. The regularizers act where they declare (`LossSpec.acting_in`):
on D's inputs, on the objective's targets, in D's loss, in G's loss.

On several ranks (`dist`), every random draw of the step (flips, z, labels, instance noise, the
gradient penalty's interpolation weights) goes through `Dist`'s shared draws: one draw for the
global batch, of which each rank keeps its slice, so N ranks draw what one process of the global
batch draws. Each phase averages its module's gradients over the ranks after its backward.

The public surface the fast path (`ganrun.train.fast`) builds on: `batches_per_step`,
`variant(step_index)`, `optimizers`, `zero_grad()`, `use_forwards(...)`, `snapshot()`/`restore()`
and `reset_scalers()`.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from ganrun.data import to_model_range
from ganrun.losses import DInputs, GInputs, LossSpec
from ganrun.optim import LrDecay
from ganrun.train.distributed import Dist
from ganrun.train.ema import EmaUpdate
from ganrun.train.phases import Batch, Phase, Stats, run_phases, total_grad_norm

__all__ = ["Batch", "GanStep", "PRECISIONS", "StepSettings", "total_grad_norm"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class StepSettings:
    n_critic: int  # D updates (each on its own real batch) per G update
    ema_decay: float  # 0: no EMA
    flip: bool  # random horizontal flips of reals
    precision: str  # fp32, bf16, fp16
    ema_rampup: float = 0.0  # EMA half-life capped at this fraction of the images seen; 0: off
    batch_size: int = 0  # images per step (the EMA ramp-up counts images); needed when ema_rampup > 0
    start_nimg: int = 0  # images seen before this step's first call (resume)


class GanStep:
    """Callable: `step(batches, step_index)` → dict of 0-d stat tensors (detached).

    `batches` holds `batches_per_step` real batches (the loop asks for that many).
    """

    def __init__(self, G: nn.Module, D: nn.Module, G_ema: Optional[nn.Module], loss: LossSpec,
                 opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer, settings: StepSettings,
                 device: torch.device, dist: Optional[Dist] = None, lr_decay: Optional[LrDecay] = None) -> None:
        self.G, self.D, self.G_ema = G, D, G_ema
        self.dist = dist or Dist()  # several ranks: global draws sliced per rank, gradients averaged
        self.loss = loss
        self._pairs_labels = any(t.pairs_labels for t in loss.acting_in("G"))  # mode seeking: pairs share labels
        self.opt_G, self.opt_D = opt_G, opt_D
        self.settings = settings
        self.device = device
        dtype = PRECISIONS[settings.precision]
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
        self.use_forwards()
        s = settings
        self._ema = EmaUpdate(G_ema, G, s.ema_decay, s.ema_rampup, s.batch_size, s.start_nimg) if G_ema is not None else None
        fp16 = settings.precision == "fp16"

        def scaler() -> torch.amp.GradScaler:
            return torch.amp.GradScaler(device.type, enabled=fp16)

        sync = self.dist.average_grads  # each update's gradients averaged over the ranks (one process: no-op)
        self.phases = [Phase("D", D, opt_D, scaler(), settings.n_critic, self._d_loss, sync=sync)]
        if loss.d_reg_every > 1:  # D's lazy regularizers as their own update (opt_D rescaled at build)
            self.phases.append(Phase("D_reg", D, opt_D, scaler(), 0, self._d_reg_loss, every=loss.d_reg_every,
                                     sync=sync))
        self.phases.append(Phase("G", G, opt_G, scaler(), 0, self._g_loss, sync=sync))
        self._lr_decay = lr_decay  # optimizer.lr_decay: each group's lr as a function of the step
        self._last_real: tuple[Any, Any] = (None, None)  # the last D batch's reals, for D_reg and G terms
        self._last_fake: tuple[Any, Any] = (None, None)  # and its fakes (detached), for D_reg terms

    # -- what the loop and the fast path use -----------------------------------------------------

    @property
    def batches_per_step(self) -> int:
        return sum(p.batches for p in self.phases)

    def variant(self, step_index: int) -> tuple[str, ...]:
        """The host-side branches taken at this step: the lazy regularizers that are due."""
        return tuple(t.name for t in self.loss.lazy() if t.due(step_index))

    @property
    def optimizers(self) -> tuple[torch.optim.Optimizer, ...]:
        """Each optimizer once (D and D_reg share D's)."""
        return tuple(dict.fromkeys(p.optimizer for p in self.phases))

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def use_forwards(self, G: Optional[Callable] = None, D_features: Optional[Callable] = None) -> None:
        """The callables the step runs for G's forward and D's `forward_features` (e.g. compiled
        ones); None: the modules themselves. Sampling and evaluation call the modules, never these."""
        self.G_forward = self.G if G is None else G  # not `or`: a compiled module has no truth value
        self.D_features = self.D.forward_features if D_features is None else D_features

    def reset_scalers(self) -> None:
        """Fresh GradScalers with the same scale: an aborted step may have left one mid-iteration."""
        for phase in self.phases:
            old = phase.scaler
            phase.scaler = torch.amp.GradScaler(self.device.type, enabled=old.is_enabled())
            if old.is_enabled():
                phase.scaler.load_state_dict(old.state_dict())

    def snapshot(self) -> dict[str, Any]:
        """A copy of everything a step changes except the RNG: weights, buffers, optimizers, scalers."""
        modules = {"G": self.G, "D": self.D, "G_ema": self.G_ema}
        return {
            "modules": {k: {n: v.detach().clone() for n, v in m.state_dict().items()}
                        for k, m in modules.items() if m is not None},
            "optimizers": [copy.deepcopy(opt.state_dict()) for opt in self.optimizers],
            "scalers": [copy.deepcopy(p.scaler.state_dict()) for p in self.phases],
        }

    def restore(self, snap: dict[str, Any]) -> None:
        modules = {"G": self.G, "D": self.D, "G_ema": self.G_ema}
        with torch.no_grad():
            for k, saved in snap["modules"].items():
                for n, v in modules[k].state_dict().items():
                    v.copy_(saved[n])
        self.zero_grad()
        self.reset_scalers()
        for opt, opt_state in zip(self.optimizers, snap["optimizers"]):
            opt.load_state_dict(opt_state)
            opt.zero_grad(set_to_none=True)
        for phase, scaler_state in zip(self.phases, snap["scalers"]):
            if scaler_state:
                phase.scaler.load_state_dict(scaler_state)

    # -- the update ----------------------------------------------------------------------------

    def __call__(self, batches: list[Batch], step_index: int) -> Stats:
        assert len(batches) == self.batches_per_step, (len(batches), self.batches_per_step)
        if self._lr_decay is not None:  # host floats, set before the updates (never inside a captured graph)
            self._lr_decay(step_index)
        stats = run_phases(self.phases, batches, step_index)
        if self._lr_decay is not None:  # the decayed learning rates, as TensorBoard's lr/G and lr/D
            for name, opt in (("lr/G", self.opt_G), ("lr/D", self.opt_D)):
                stats[name] = torch.full((), opt.param_groups[0]["lr"], device=self.device)
        self._last_real = self._last_fake = (None, None)
        # EMA of G's weights, with its ramp-up (ganrun.train.ema); buffers are copied
        if self._ema is not None:
            self._ema()
        return stats

    # -- the phases' forwards ------------------------------------------------------------------

    def _reals(self, batch: Batch) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        x, y = batch
        x = to_model_range(x)
        if self.settings.flip and x.ndim == 4:
            flip = self.dist.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(3), x)
        return x, y

    def _noise(self, n: int, c: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """z, and labels for a conditional G: `c` when given (the reals' labels), else uniform."""
        z = self.dist.randn(n, self.G.latent_dim, device=self.device)
        if not self.G.num_classes:
            return z, None
        return z, c if c is not None else self.dist.randint(self.G.num_classes, n, device=self.device)

    def _d_input(self, x: torch.Tensor) -> torch.Tensor:
        for term in self.loss.acting_in("D_input"):
            x = term.transform(x, self.dist)
        return x

    def _d_loss(self, batch: Batch, step_index: int, stats: Stats) -> torch.Tensor:
        """D phase: G frozen; conditional fakes take the reals' labels, so D sees the data's class
        balance and the gradient penalty interpolates within one class."""
        real, c_real = self._reals(batch)
        self._last_real = (real, c_real)
        z, c_fake = self._noise(real.shape[0], c_real)
        with self.autocast():
            fake = self.G_forward(z, c_fake)
            real_logits = self.D_features(self._d_input(real), c_real)[0].float()
            fake_logits = self.D_features(self._d_input(fake), c_fake)[0].float()
        objective = self.loss.objective
        d_loss = objective.d_loss(real_logits, fake_logits, *self.loss.targets)
        self._last_fake = (fake.detach(), c_fake)
        ctx = DInputs(self.D, real, fake, c_real, c_fake, self.autocast, self.dist.rand)
        total = d_loss + self._terms([t for t in self.loss.acting_in("D") if t.every == 1], ctx, step_index, stats)
        stats["loss/D"] = d_loss.detach()
        stats.update(objective.d_stats(real_logits, fake_logits))
        return total

    def _d_reg_loss(self, batch: None, step_index: int, stats: Stats) -> torch.Tensor:
        """D_reg phase (every k steps): the lazy D terms alone, on the last D batch's reals and
        fakes (each term scales itself by k)."""
        lazy = [t for t in self.loss.acting_in("D") if t.every > 1]
        (real, c_real), (fake, c_fake) = self._last_real, self._last_fake
        ctx = DInputs(self.D, real, fake, c_real, c_fake, self.autocast, self.dist.rand)
        return self._terms(lazy, ctx, step_index, stats)

    @staticmethod
    def _terms(terms, ctx, step_index: int, stats: Stats) -> torch.Tensor | float:
        """Σ of the weighted terms due at `step_index`; each logs its raw value under its `stat`."""
        total = 0.0
        for term in terms:
            if term.due(step_index):
                weighted, value = term.penalty(ctx)
                total = total + weighted
                if term.stat:
                    stats[term.stat] = value.detach()
        return total

    def _g_loss(self, batch: None, step_index: int, stats: Stats) -> torch.Tensor:
        """G phase: D frozen; fresh noise (and uniform labels) of the D batches' size; with a term that
        compares fakes of one label (`pairs_labels`), the second half of the labels repeats the first."""
        real, c_real = self._last_real
        z, c_fake = self._noise(real.shape[0])
        if c_fake is not None and self._pairs_labels:
            half = c_fake.shape[0] // 2  # the second half takes the first half's labels
            c_fake = torch.cat([c_fake[:half], c_fake[:half], c_fake[2 * half:]])
        with self.autocast():
            fake = self.G_forward(z, c_fake)
            fake_logits, fake_features = self.D_features(self._d_input(fake), c_fake)
        g_loss = self.loss.objective.g_loss(fake_logits.float())
        total = g_loss
        ctx = GInputs(self.D_features, fake_features, real, c_real, self._d_input, self.autocast, fake, z)
        total = total + self._terms(self.loss.acting_in("G"), ctx, step_index, stats)
        stats["loss/G"] = g_loss.detach()
        return total
