"""Device placement for sweep jobs: which GPU a job trains on, how many CPU threads it uses.

Hydra's launchers assign no devices. With k GPUs, job j of a sweep runs on GPU
(j // jobs_per_gpu) mod k: jobs_per_gpu=1 is plain round-robin (j mod k); 2 puts two
consecutive jobs on each GPU (small GAN steps are launch-bound, so two or four jobs per GPU
raise total throughput). Run `hydra.launcher.n_jobs` = k × jobs_per_gpu jobs at a time to keep
every GPU at that load. On the CPU each job's torch threads are cores // n_jobs, so parallel
jobs do not oversubscribe the cores.

The joblib launcher (loky) reuses worker processes, so the choice is made per job, inside
the job, before its first CUDA call: `torch.cuda.set_device`, not CUDA_VISIBLE_DEVICES (which a
worker that already initialized CUDA would ignore).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Placement:
    gpu: Optional[int]  # CUDA device index; None: the job runs on the CPU
    threads: Optional[int]  # torch intra-op threads; None: leave torch's default
    workers: int  # jobs of the sweep that run at the same time


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parallel_jobs(launcher: Any) -> int:
    """Jobs a launcher runs at once: joblib's n_jobs (-1: all cores, -2: all but one, ...), else 1."""
    target = str(getattr(launcher, "_target_", "") or (launcher.get("_target_", "") if hasattr(launcher, "get") else ""))
    if "joblib" not in target.lower():
        return 1
    n = launcher.get("n_jobs", -1) if hasattr(launcher, "get") else getattr(launcher, "n_jobs", -1)
    n = int(n if n is not None else 1)
    if n < 0:
        n = cpu_count() + 1 + n
    return max(1, n)


def place(job_num: int, workers: int, device: str, jobs_per_gpu: int, gpus: int, cores: int) -> Placement:
    """Pure rule: the GPU and thread count of job `job_num` (see the module docstring)."""
    use_gpu = gpus > 0 and device in ("auto", "cuda")
    gpu = (job_num // max(1, jobs_per_gpu)) % gpus if use_gpu else None
    threads = max(1, cores // workers) if workers > 1 else None
    return Placement(gpu, threads, workers)


def apply(placement: Placement) -> None:
    """Make this process's torch follow the placement (call before any CUDA work of the job)."""
    import torch

    if placement.gpu is not None:
        torch.cuda.set_device(placement.gpu)
    if placement.threads is not None:
        torch.set_num_threads(placement.threads)


def place_job(job_num: int, launcher: Any, device: str, jobs_per_gpu: int) -> Placement:
    """Place sweep job `job_num` of a sweep launched by `launcher` (Hydra's launcher config) and apply it."""
    import torch

    gpus = torch.cuda.device_count() if device != "cpu" else 0  # NVML query: does not initialize CUDA
    placement = place(job_num, parallel_jobs(launcher), device, jobs_per_gpu, gpus, cpu_count())
    apply(placement)
    return placement
