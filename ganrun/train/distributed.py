"""One run on several processes: the process group, rank roles, gradient averaging, shared draws.

Where the ranks come from (`ranks_from_env`): torchrun (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT), a submitit job of several tasks (its Slurm or local environment), or
`trainer.devices=N`, for which the Hydra job spawns its own ranks (`ganrun.train.spawn`) and sets
the torchrun variables for them. Backends: NCCL on GPUs, gloo on the CPU; a second gloo group
("control") carries host-side values (the stop flag, logged scalars) so they never wait on the
GPU stream.

The data-parallel scheme, chosen for the gradient penalty and R1 (double backward):
- G and D are not wrapped in DistributedDataParallel. DDP arms its reducer on every forward and
  buckets only the parameters that required grad at wrap time, while a GAN step calls D several
  times per backward (reals, fakes, interpolates under `create_graph=True`) and freezes G or D in
  turn. Instead each phase backpropagates locally and `average_grads` all-reduces its module's
  gradients in one flat buffer before the optimizer step, as StyleGAN2-ADA does. Every rank then
  holds the same gradients, takes the same step and keeps the same weights (checked by tests).
- `trainer.batch_size` is the global batch: each rank trains on its own `batch_size / world`
  slice (`local`), the data source gives every rank a disjoint slice of the same per-epoch
  permutation, and random draws of the step (z, labels, flips, penalty interpolation) are drawn
  for the global batch from a generator in the same state on every rank, each rank keeping its
  slice (`randn`, `rand`, `randint`). Noise and flips differ per rank, and N processes see the
  same data and noise as one process of the same global batch: their weights agree within float
  tolerance, and a checkpoint resumes on any number of processes with the same random stream.
  (Draws that stay local, like dropout masks, repeat across ranks; BatchNorm normalizes per rank
  unless model.sync_bn=true, see `ganrun.train.sync_bn`.)
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from ganrun.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: its global and local rank, the world size, who started it."""

    rank: int
    local_rank: int
    world_size: int
    source: str  # torchrun, submitit, spawn


def ranks_from_env(environ: Optional[dict] = None) -> Optional[Ranks]:
    """The ranks a launcher gave this process, or None when it runs alone.

    torchrun (and ganrun's own spawner) set RANK/WORLD_SIZE/LOCAL_RANK. A submitit job with more
    than one task (Slurm's SLURM_PROCID/SLURM_NTASKS, or the local executor's equivalents) gets
    the same variables exported from its job environment: the first node is the rendezvous host
    and the port is derived from the job id, so every task of the job agrees on both.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env and "RANK" in env:
        source = env.get("GANRUN_RANKS_FROM", "torchrun")
        return Ranks(int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"])), int(env["WORLD_SIZE"]), source)
    if env.get("SUBMITIT_EXECUTOR") and environ is None:
        import submitit

        job = submitit.JobEnvironment()
        if job.num_tasks > 1:
            dist_env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            return Ranks(dist_env.rank, dist_env.local_rank, dist_env.world_size, "submitit")
    return None


@dataclass
class Dist:
    """This process's part in the run. `Dist()` is a run on one process: every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control: Any = field(default=None, repr=False)  # gloo group for host-side values

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes TensorBoard, checkpoints, samples and result files, and evaluates."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    # -- the global batch and this rank's slice of it -----------------------------------------

    def local(self, global_batch: int) -> int:
        """This rank's share of a global batch (validated to divide evenly)."""
        return global_batch // self.world_size

    def _slice(self, t: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return t
        n = t.shape[0] // self.world_size
        return t[self.rank * n : (self.rank + 1) * n]

    def randn(self, n: int, *shape: int, device: torch.device, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """`torch.randn(n, *shape)` for this rank: its slice of one draw for the global batch."""
        return self._slice(torch.randn(n * self.world_size, *shape, device=device, dtype=dtype))

    def rand(self, n: int, *shape: int, device: torch.device, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        return self._slice(torch.rand(n * self.world_size, *shape, device=device, dtype=dtype))

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """`torch.randn_like(x)` for this rank (x: this rank's slice of a global batch)."""
        return self.randn(*x.shape, device=x.device, dtype=x.dtype)

    def randint(self, high: int, n: int, device: torch.device) -> torch.Tensor:
        return self._slice(torch.randint(high, (n * self.world_size,), device=device))

    # -- collectives ---------------------------------------------------------------------------

    def average_grads(self, module: nn.Module) -> None:
        """Mean of the module's gradients over all ranks, in place: one all-reduce of a flat buffer."""
        if not self.active:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        torch.distributed.all_reduce(flat)
        flat.div_(self.world_size)
        for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(synced)

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (they already agree when seeded alike)."""
        if not self.active:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                torch.distributed.broadcast(t.data, src=0)

    def max(self, value: int) -> int:
        """The largest of the ranks' values, on every rank (host-side, over the control group)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.control)
        return int(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Means over the ranks of host-side scalars (same names, same order on every rank)."""
        if not self.active or not values:
            return values
        names = sorted(values)
        t = torch.tensor([values[n] for n in names], dtype=torch.float64)
        torch.distributed.all_reduce(t, group=self.control)
        return {n: v / self.world_size for n, v in zip(names, t.tolist())}

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (host-side, small objects)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj, group=self.control)
        return out

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class StopEverywhere:
    """The loop's `should_stop` on every rank: a signal on any rank stops all after the same step.

    At each step boundary the ranks all-reduce (max) the number of the signal each has received
    (0: none), over the gloo control group: a host-side value, no wait on the GPU stream.
    """

    def __init__(self, stop: Callable[[], bool], dist: Dist) -> None:
        self.stop, self.dist = stop, dist
        self.signum = 0  # the signal that stopped the run, whichever rank received it

    def __call__(self) -> bool:
        if not self.dist.active:
            return self.stop()
        mine = (getattr(self.stop, "signum", None) or 1) if self.stop() else 0
        self.signum = self.dist.max(mine) or self.signum
        return self.signum != 0


class RankMeanStats:
    """Stats whose collected means are averaged over the ranks (the same names on every rank)."""

    def __init__(self, stats: Any, dist: Dist) -> None:
        self.stats, self.dist = stats, dist

    def report(self, values: dict[str, torch.Tensor]) -> None:
        self.stats.report(values)

    def collect(self) -> dict[str, float]:
        return self.dist.mean(self.stats.collect())


class OtherRankJobs:
    """The loop's periodic jobs on ranks other than 0: no logs, no files, no evaluation."""

    def __init__(self, stop: Any) -> None:
        self.stop = stop  # the rank's StopOnSignal (the loop's should_stop, through StopEverywhere)
        self.best = self.tracker = self.last_saved = None

    def log(self, step: int, values: dict[str, float]) -> None: ...
    def samples(self, step: int) -> None: ...
    def evaluate(self, step: int, nimg: int) -> None: ...
    def checkpoint(self, step: int, nimg: int) -> None: ...


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(name: str, ranks: Ranks) -> torch.device:
    """The training device of this rank: its own GPU (by local rank) or the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise UserError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    if count == 1:  # the launcher gave each task its own GPU (CUDA_VISIBLE_DEVICES)
        return torch.device("cuda", 0)
    if ranks.local_rank >= count:
        raise UserError(f"rank {ranks.rank} has local rank {ranks.local_rank} but this node has only {count} CUDA "
                        f"devices; start at most {count} processes per node")
    return torch.device("cuda", ranks.local_rank)


def init(ranks: Ranks, device: torch.device, timeout_s: float) -> Dist:
    """Join the process group (NCCL on GPUs, gloo on the CPU) and make the gloo control group.

    `timeout_s` bounds every collective: a rank that waits longer for the others (one was killed,
    or hangs) fails with an error instead of hanging forever.
    """
    import torch.distributed as td

    timeout = timedelta(seconds=timeout_s)
    if backend(device) == "nccl":
        torch.cuda.set_device(device)
        td.init_process_group("nccl", rank=ranks.rank, world_size=ranks.world_size, timeout=timeout,
                              device_id=device)
        control = td.new_group(backend="gloo", timeout=timeout)
    else:
        td.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world_size, timeout=timeout)
        control = None  # the default group is gloo already
    return Dist(ranks.rank, ranks.world_size, ranks.local_rank, control)


@contextmanager
def joined(ranks: Ranks, device_name: str, devices: int, batch_size: int, timeout_s: float
           ) -> Iterator[tuple[Dist, torch.device]]:
    """This process as its rank of the run (checked against the config), its device; left on exit."""
    if devices not in (1, ranks.world_size):
        raise UserError(f"trainer.devices={devices} but {ranks.source} started {ranks.world_size} "
                        f"processes; set trainer.devices={ranks.world_size} (or leave it at 1)")
    if batch_size % ranks.world_size:
        raise UserError(f"trainer.batch_size={batch_size} (the global batch) must be a multiple of "
                        f"the {ranks.world_size} processes")
    device = rank_device(device_name, ranks)
    dist = init(ranks, device, timeout_s)
    try:
        yield dist, device
    finally:
        dist.close()


def is_collective_failure(exc: BaseException) -> bool:
    """An error raised because another rank went away (closed connection, timeout), not a bug here."""
    dist_errors = tuple(getattr(torch.distributed, n) for n in ("DistError",) if hasattr(torch.distributed, n))
    if dist_errors and isinstance(exc, dist_errors):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Timed out", "timed out", "Broken pipe",
        "NCCL communicator was aborted", "ProcessGroup", "Gloo"))


def convert_sync_bn(module: nn.Module, dist: Dist) -> nn.Module:
    """`model.sync_bn=true` on several ranks: BatchNorm statistics over the global batch."""
    if not dist.active:
        return module
    from ganrun.train.sync_bn import convert

    return convert(module)
