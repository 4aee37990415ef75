"""Optimizers by config name; separate learning rates for G and D (TTUR)."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from ganrun.registry import Registry

Factory = Callable[[Iterable[nn.Parameter], float, object], torch.optim.Optimizer]
OPTIMIZERS: Registry[Factory] = Registry("optimizer")


def accelerator_flags(params: list) -> dict:
    """`fused=True` where every parameter is a CUDA float tensor: one kernel per step, GradScaler
    without a host sync, and safe to capture in a CUDA graph (the fast path sets `capturable`)."""
    on_cuda = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    return {"fused": True} if on_cuda else {}


@OPTIMIZERS.register("adam")
def adam(params, lr: float, cfg) -> torch.optim.Optimizer:
    params = list(params)
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
                            **accelerator_flags(params))


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, lr: float, cfg) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params, lr: float, cfg) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_optimizers(cfg, G: nn.Module, D: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """(opt_G, opt_D) from an OptimizerConfig; g_lr/d_lr default to lr."""
    make = OPTIMIZERS.get(cfg.name)
    g_lr = cfg.lr if cfg.g_lr is None else cfg.g_lr
    d_lr = cfg.lr if cfg.d_lr is None else cfg.d_lr
    return make(G.parameters(), g_lr, cfg), make(D.parameters(), d_lr, cfg)
