"""`build_run(c, device)`: everything a training run is made of, built from its typed config.

The one place that wires the builders together, shared by `ganrun train`, the throughput
benchmark and the tests. Order matters for "same seed → same run": the global RNG is seeded,
then the models are initialised (the only builder that draws from it); the data order and the
fixed grid inputs have generators of their own.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch

from ganrun import memory
from ganrun.config.schema import TrainAppConfig
from ganrun.data import ArrayDataset, DataSpec, build_dataset
from ganrun.data.loader import BatchSource
from ganrun.errors import UserError
from ganrun.losses import build_loss, check_discriminator
from ganrun.models import build_models
from ganrun.optim import LrDecay, build_optimizers
from ganrun.runtime import fixed_inputs, seed_everything
from ganrun.train.distributed import Dist, convert_sync_bn
from ganrun.train.fast import accelerate
from ganrun.train.signals import phase
from ganrun.train.step import GanStep, StepSettings


@dataclass
class BuiltRun:
    """A run's parts, before any state is restored or any step taken."""

    dataset: ArrayDataset
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: Optional[torch.nn.Module]
    loss: object  # losses.LossSpec
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    source: BatchSource
    settings: StepSettings
    fixed_z: torch.Tensor  # the sample grid's inputs (replaced by the checkpoint's on resume)
    fixed_c: Optional[torch.Tensor]
    steps: int  # total training steps
    device: torch.device
    dist: Dist  # this process's rank in the run (Dist(): one process)
    lr_decay: Optional[LrDecay] = None  # optimizer.lr_decay; None: constant learning rates

    @property
    def spec(self) -> DataSpec:
        return self.dataset.spec

    def step_fn(self, compile: str, channels_last: bool, notify: Callable[[str], None], start_nimg: int = 0):
        """The GAN step over these parts, accelerated as `trainer.compile` says; `start_nimg` images were
        seen before its first call (a resumed run: the EMA ramp-up goes on from there)."""
        settings = replace(self.settings, start_nimg=start_nimg)
        step = GanStep(self.G, self.D, self.G_ema, self.loss, self.opt_G, self.opt_D, settings, self.device,
                       self.dist, self.lr_decay)
        return accelerate(step, compile, channels_last=channels_last, notify=notify)

    def batches(self, step_fn) -> list:
        """One step's batches: as many as `step_fn` says it takes (`batches_per_step`, n_critic)."""
        return [self.source.next() for _ in range(step_fn.batches_per_step)]


def total_steps(t, dataset_size: int) -> int:
    """`trainer.max_steps`, else `trainer.epochs` passes over the data (n_critic batches per step)."""
    if t.max_steps is not None:
        return t.max_steps
    per_epoch = max(1, dataset_size // (t.batch_size * t.n_critic))
    return max(1, round(t.epochs * per_epoch))


def check_sizes(c: TrainAppConfig, spec: DataSpec, device: torch.device) -> None:
    """Refuse, before allocating, sizes whose tensors cannot fit on the device (one line, what fits)."""
    memory.require_model(c.model, spec, build_models, device)
    example = 4 * math.prod(spec.shape)  # one example as float32
    memory.require("trainer.n_critic", c.trainer.n_critic, c.trainer.batch_size * example, device,
                   what="the D batches of one step")
    if spec.is_image:
        memory.require("trainer.num_sample_images", c.trainer.num_sample_images, 4 * c.model.latent_dim + 2 * example,
                       device, what="the fixed-noise sample grid")
    if c.eval.every:
        memory.require("eval.num_samples", c.eval.num_samples, 2 * example, "cpu", what="the evaluation samples")


def check_batch_norm(c: TrainAppConfig, G: torch.nn.Module, D: torch.nn.Module) -> None:
    """BatchNorm needs two examples per batch to have batch statistics at all."""
    if c.trainer.batch_size >= 2:
        return
    for name, net in (("G", G), ("D", D)):
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules()):
            raise UserError(f"trainer.batch_size={c.trainer.batch_size} cannot train model={c.model.name}: its {name} "
                            "has BatchNorm layers, which need at least 2 examples per batch; use trainer.batch_size>=2")


def build_run(c: TrainAppConfig, device: torch.device, dataset: Optional[ArrayDataset] = None,
              dist: Optional[Dist] = None) -> BuiltRun:
    """Build data, models (+ EMA copy), loss, optimizers, batch source and grid inputs on `device`.

    Reads the typed train config only; `dataset` skips loading when the caller already has it.
    Raises UserError for device settings the device cannot honour. With `dist` (several ranks):
    BatchNorm synchronized when model.sync_bn, rank 0's weights on every rank, this rank's shard
    of every global batch.
    """
    dist = dist or Dist()
    if c.device.deterministic:
        torch.use_deterministic_algorithms(True)
    if c.device.precision == "fp16" and device.type != "cuda":
        raise UserError("device.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    seed_everything(c.seed)
    if dataset is None:
        with phase("data loading (start-up: no new checkpoint was written)"):
            dataset = build_dataset(c.dataset)
    spec = dataset.spec
    check_sizes(c, spec, device)
    G, D = build_models(c.model, spec)
    check_batch_norm(c, G, D)
    if c.model.sync_bn:
        G, D = convert_sync_bn(G, dist), convert_sync_bn(D, dist)
    G, D = G.to(device), D.to(device)
    dist.broadcast_module(G)
    dist.broadcast_module(D)
    G_ema = copy.deepcopy(G).requires_grad_(False) if c.trainer.ema_decay > 0 else None
    loss = build_loss(c.loss)
    check_discriminator(loss, D)
    opt_G, opt_D = build_optimizers(c.optimizer, G, D, loss.d_reg_every)
    source = BatchSource(dataset, c.trainer.batch_size, device, seed=c.seed,
                         device_resident=c.dataset.device_resident, rank=dist.rank, world_size=dist.world_size)
    fixed_z, fixed_c = fixed_inputs(G, spec, c.trainer.num_sample_images, c.seed, device)
    t = c.trainer
    steps = total_steps(c.trainer, spec.size)
    settings = StepSettings(t.n_critic, t.ema_decay, c.dataset.flip, c.device.precision, t.ema_rampup, t.batch_size)
    # made before any checkpoint is restored: the decay starts from the configured lrs, not the saved ones
    lr_decay = LrDecay(c.optimizer.lr_decay, (opt_D, opt_G), steps) if c.optimizer.lr_decay != "none" else None
    return BuiltRun(dataset, G, D, G_ema, loss, opt_G, opt_D, source, settings, fixed_z, fixed_c,
                    steps, device, dist, lr_decay)
