"""Structured configs: one dataclass per config group.

Types are checked by OmegaConf when Hydra composes the config (a typo or a non-number fails
there); value ranges and cross-field rules are checked by `ganrun.config.validate` before any
work. Every default lives in `configs/`; the values here only document the type and the unit.
This module imports nothing from ganrun.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class DatasetConfig:
    name: str = MISSING  # registry name: fashion_mnist, mnist, cifar10, folder, ring8, grid25
    root: Optional[str] = None  # data folder; None: $GANRUN_DATA, then /usr/share/datasets/<name>
    download: bool = False  # let torchvision download when no local copy exists (needs a network)
    image_size: Optional[int] = None  # pixels; images are resized to this; None: native size
    channels: Optional[int] = None  # 1 or 3 to convert (folder); None: as stored
    split: str = "train"  # train or test
    limit: Optional[int] = None  # use only the first `limit` examples; None: all
    flip: bool = False  # random horizontal flips, applied inside the training step
    device_resident: bool = True  # hold the uint8 set on the training device when it fits
    num_points: int = 100_000  # 2-D mixtures: size of the generated training set


@dataclass
class ModelConfig:
    """The keys every model family has. A family extends it with its own keys in a dataclass beside
    its builder (ganrun/models/<family>.py), which the family's YAML names as its schema."""

    name: str = MISSING  # registry name: mlp, cgan, dcgan, cdcgan, wgan_gp, ...
    latent_dim: int = 100  # size of z
    conditional: bool = False  # G and D take class labels c (needs a labelled dataset)
    embed_dim: int = 50  # conditional models: size of the label embedding
    spectral_norm: bool = False  # spectral normalization on every D layer
    sync_bn: bool = False  # trainer.devices > 1: BatchNorm statistics over the global batch, not per rank

    def check(self, spec: Any = None) -> None:
        """The family's own rules: the ranges of its keys and, given the data's spec (a DataSpec),
        the data it can model. Raises UserError naming the key; the shared keys have none here."""


@dataclass
class LossConfig:
    """The objective; the regularizers' keys are added by `ganrun.losses.LossConfig`, the group's
    full schema: each regularizer declares its own beside it (ganrun/losses/regularizers/<name>.py,
    YAML defaults in configs/loss/regularizers/default.yaml). Validation is by kind of key:
    weights are >= 0, `*_every` intervals > 0, `*_label` targets in [0, 1]."""

    name: str = MISSING  # objective: minimax, non_saturating, hinge, least_squares, wasserstein


@dataclass
class OptimizerConfig:
    name: str = MISSING  # registry name: adam, rmsprop, sgd
    lr: float = 2e-4  # learning rate of both nets unless g_lr/d_lr are set
    g_lr: Optional[float] = None  # generator learning rate (TTUR); None: lr
    d_lr: Optional[float] = None  # discriminator learning rate (TTUR); None: lr
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # adam
    momentum: float = 0.0  # sgd, rmsprop
    alpha: float = 0.99  # rmsprop smoothing constant
    eps: float = 1e-8  # adam, rmsprop
    weight_decay: float = 0.0
    lr_decay: str = "none"  # none, linear or cosine: both learning rates decay to 0 over the run's steps


@dataclass
class DeviceConfig:
    name: str = "auto"  # auto (cuda when available), cpu or cuda
    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast; losses stay fp32)
    channels_last: bool = False  # conv models: NHWC memory format on CUDA
    deterministic: bool = False  # torch.use_deterministic_algorithms; bit-exact reruns on CPU
    cpu_threads: Optional[int] = None  # torch intra-op threads when training on the CPU; None: torch's default (one per core)


@dataclass
class TrainerConfig:
    batch_size: int = 128  # images per D step, global: split evenly over the trainer.devices processes
    max_steps: Optional[int] = None  # generator steps to train; None: use epochs
    epochs: Optional[float] = None  # passes over the data (in D batches); used when max_steps is None
    n_critic: int = 1  # D steps per G step (5 for WGAN-GP)
    ema_decay: float = 0.0  # EMA of G's weights per step (e.g. 0.999); 0: off
    ema_rampup: float = 0.0  # EMA half-life capped at this fraction of the images seen (StyleGAN2-ADA: 0.05); 0: off
    log_every: int = 50  # steps between reading scalars to the host and logging them
    sample_every: int = 500  # steps between sample grids; 0: only at the end
    checkpoint_every: int = 1000  # steps between checkpoints/last.pt; the end always saves
    keep_last: int = 1  # how many step-numbered checkpoints to keep besides last.pt and best.pt
    resume: Optional[str] = None  # checkpoint file or run dir to continue from; auto: the run dir's own last.pt if any
    devices: int = 1  # processes (GPUs, or CPU processes with device=cpu) training this one run; 1: no DDP
    collective_timeout_s: float = 1800.0  # seconds a rank waits for the others before the run fails
    compile: str = "none"  # none, graph (CUDA graph of the step) or inductor (torch.compile)
    num_sample_images: int = 64  # images in the fixed-noise sample grid
    jobs_per_gpu: int = 1  # sweeps: consecutive jobs sharing one GPU; job j trains on GPU (j // jobs_per_gpu) mod k


@dataclass
class LoggerConfig:
    tensorboard: bool = True  # write TensorBoard events into the run dir
    progress: str = "auto"  # auto (rich bar on a terminal, lines otherwise), rich, plain or none
    print_config: bool = False  # print the resolved config tree at start; the summary and overrides always show


@dataclass
class EvalConfig:
    every: int = 0  # steps between evaluations during training; 0: off
    num_samples: int = 10_000  # generated samples per evaluation
    features: str = "domain"  # feature network: domain (ours) or inception
    inception_weights: Optional[str] = None  # path to pytorch-fid's pt_inception-*.pth
    cache_dir: Optional[str] = None  # where fitted feature networks and statistics are kept
    batch_size: int = 500  # generation and feature extraction batch size
    seed: int = 0  # seed of the evaluation noise
    classifier_epochs: int = 3  # domain classifier: training passes over the train split
    classifier_batch_size: int = 64  # domain classifier: training batch size


@dataclass
class TrainAppConfig:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    loss: LossConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    device: DeviceConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    eval: EvalConfig = MISSING
    seed: int = 0  # seeds torch, numpy and python; same seed, same run


GROUPS: dict[str, type] = {
    "dataset": DatasetConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optimizer": OptimizerConfig,
    "device": DeviceConfig,
    "trainer": TrainerConfig,
    "logger": LoggerConfig,
    "eval": EvalConfig,
}


@dataclass
class EvalAppConfig:
    checkpoint: str = MISSING  # checkpoint file or run dir to evaluate
    eval: EvalConfig = MISSING
    device: DeviceConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    overwrite: bool = False  # replace result files of an earlier identical evaluation; false: refuse


@dataclass
class SampleAppConfig:
    checkpoint: str = MISSING  # checkpoint file or run dir to sample from
    n: int = 64  # images in the grid
    label: Optional[int] = None  # conditional models: class of every sample; None: one row per class
    out: Optional[str] = None  # image path (.png, .jpg, ...); None: samples/<name>.png next to the checkpoint
    interpolate: bool = False  # a latent interpolation strip instead of independent samples
    device: DeviceConfig = MISSING
    seed: int = 0
    overwrite: bool = False  # replace an existing output file; false: refuse


@dataclass
class FeaturesAppConfig:
    action: str = "fit"  # fit: train (or load) the domain classifier and report its accuracy
    dataset: DatasetConfig = MISSING
    eval: EvalConfig = MISSING
    device: DeviceConfig = MISSING
    logger: LoggerConfig = MISSING


@dataclass
class ExportAppConfig:
    checkpoint: str = MISSING  # checkpoint file or run dir whose generator (EMA when kept) is exported
    format: str = "onnx"  # onnx, torchscript or state_dict
    out: Optional[str] = None  # output file; None: <run dir>/export/generator_<step><suffix of the format>
    overwrite: bool = False  # replace an existing output file
    tolerance: float = 1e-4  # largest allowed max abs difference from eager G in the parity check


@dataclass
class ReportAppConfig:
    dir: str = MISSING  # a sweep dir, a run dir, or outputs/
    out: Optional[str] = None  # folder for report.md/csv/png; None: dir itself
    images: bool = True  # write report.png (contact sheet of the runs' last samples)
