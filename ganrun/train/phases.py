"""The GAN update as a list of phases, built once, each run by the same function.

A `Phase` names the network it trains, its optimizer and GradScaler, how many real batches it
takes per step (D: `n_critic`, one update per batch; D_reg and G: none), every how many steps it
runs, and its forward, which returns the loss to minimize and reports its statistics. The step's
phases, in order (StyleGAN2-ADA's Dmain / Dreg / Gmain):

    D × n_critic     the objective and the regularizers due every step
    D_reg every k    the lazy D regularizers (R1 with `loss.r1_every=k > 1`) alone, on the last D
                     batch's reals, one more update of D with its own optimizer step; D's Adam lr
                     and betas are rescaled by k/(k+1) for it (`ganrun.optim.lazy_rescale`)
    G                fresh noise

`run_phase` is the one sequence every phase follows:

    zero_grad → requires_grad_ on its own module only → forward/backward → sync → unscale → grad norm → step

`sync` is the one place where several ranks meet in a step: the mean of the phase's gradients over
the ranks (`Dist.average_grads`, a no-op on one process), once per update, after the backward of
the whole phase loss, so the gradient penalty's and R1's gradients are averaged with the rest.

Whether a phase is due is a host-side branch on the step counter, never on a tensor, so every
variant of the step (`GanStep.variant`) can be captured as a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

Batch = tuple[torch.Tensor, Optional[torch.Tensor]]  # (data in storage dtype, labels or None)
Stats = dict[str, torch.Tensor]
Forward = Callable[[Optional[Batch], int, Stats], torch.Tensor]  # (batch, step_index, stats) -> loss


@dataclass
class Phase:
    name: str  # "D" or "G"; its gradient norm is logged as grad_norm/<name>
    module: nn.Module  # the network this phase trains; every other one is frozen during it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16 loss scaling; a disabled scaler is a no-op
    batches: int  # real batches per step, one update each; 0: one update that takes no batch
    forward: Forward
    every: int = 1  # steps between runs of this phase (a lazy regularization phase: k)
    sync: Callable[[nn.Module], None] = lambda module: None  # gradients averaged over the ranks, in place
    # the module's parameters, listed once: walking the module tree for them on every update was a
    # tenth of a small model's CPU step (a 2-D mixture MLP); load_state_dict copies into these tensors
    params: list[nn.Parameter] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.params = list(self.module.parameters())

    @property
    def updates(self) -> int:
        return max(self.batches, 1)

    def due(self, step_index: int) -> bool:
        return step_index % self.every == 0


def total_grad_norm(module: nn.Module | list[nn.Parameter]) -> torch.Tensor:
    """‖∇θ‖₂ over all of `module`'s gradients (or a list of parameters'), on the device (no host sync)."""
    params = module.parameters() if isinstance(module, nn.Module) else module
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


def _trainable(phases: list[Phase], module: Optional[nn.Module]) -> None:
    """requires_grad on `module`'s parameters only (None: on every phase's module's)."""
    for phase in phases:
        flag = module is None or phase.module is module
        for p in phase.params:
            p.requires_grad_(flag)


def run_phase(phase: Phase, phases: list[Phase], batch: Optional[Batch], step_index: int, stats: Stats) -> None:
    """One update of `phase.module`: the same sequence for every phase."""
    phase.optimizer.zero_grad(set_to_none=True)
    _trainable(phases, phase.module)
    loss = phase.forward(batch, step_index, stats)
    phase.scaler.scale(loss).backward()
    phase.sync(phase.module)
    phase.scaler.unscale_(phase.optimizer)
    stats[f"grad_norm/{phase.name}"] = total_grad_norm(phase.params)
    phase.scaler.step(phase.optimizer)
    phase.scaler.update()


def run_phases(phases: list[Phase], batches: list[Batch], step_index: int) -> Stats:
    """Every phase due at `step_index`, in order, each on its share of `batches` (a phase that takes
    batches is due every step); the trained modules end trainable."""
    stats: Stats = {}
    it = iter(batches)
    for phase in phases:
        if not phase.due(step_index):
            continue
        for _ in range(phase.updates):
            run_phase(phase, phases, next(it) if phase.batches else None, step_index, stats)
    _trainable(phases, None)
    return stats
