"""`model.sync_bn=true`: BatchNorm whose batch statistics span every rank's slice of the batch.

torch's nn.SyncBatchNorm has GPU kernels only, so ganrun computes the same statistics from one
differentiable all-reduce per layer (`_SumOverRanks`), on NCCL and gloo alike: the
per-channel sum, sum of squares and count of this rank's slice are summed over the ranks, and
the normalization, its gradient (and a gradient penalty's double backward through it) follow
by autograd. N ranks then normalize exactly as one process does over the global batch. The
module keeps BatchNorm's parameters, buffers and state-dict keys, so checkpoints load into the
plain model (eval, sample, a one-process resume); outside a multi-process run it is BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn


class _SumOverRanks(torch.autograd.Function):
    """y = Σ_ranks x, differentiable (the gradient is the sum of the ranks' gradients, itself
    differentiable for a double backward). torch.distributed.nn's all_reduce does the same and is
    deprecated in favour of functional collectives, which do not differentiate eagerly on gloo."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as td

        y = x.clone()
        td.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverRanks.apply(grad.contiguous())


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm1d/2d with statistics over all ranks in training mode."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected 2-D to 5-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as td

        if not (self.training and td.is_available() and td.is_initialized() and td.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.full((1,), x.numel() / c, device=x.device, dtype=torch.float32)
        stats = _SumOverRanks.apply(torch.cat([xf.sum(dims), xf.square().sum(dims), count]))  # summed over ranks
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean.square()).clamp_min(0)  # biased, as BatchNorm normalizes
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert(module: nn.Module) -> nn.Module:
    """Every BatchNorm in `module` → GlobalBatchNorm holding the same parameters and buffers."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            bn = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                 child.track_running_stats, device=None, dtype=None)
            bn.load_state_dict(child.state_dict())
            bn.to(next(iter(child.buffers()), torch.empty(0)).device)
            bn.train(child.training)
            setattr(module, name, bn)
        else:
            convert(child)
    return module
