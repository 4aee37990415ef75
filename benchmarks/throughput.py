"""Training throughput: the tutorial GAN loop against ganrun's trainer, side by side, in one process.

    python -m benchmarks.throughput                                  # GPU: mlp, dcgan, wgan_gp at B=128
    python -m benchmarks.throughput --device cpu --data synthetic --steps 20 --warmup 3

For each model (names from ganrun's model registry; a name that is not registered is skipped
with a note) it times, on one device and the same data, model and batch size:

(a) baseline: the tutorial loop. A torchvision DataLoader over the dataset as PIL images with
    ToTensor + Normalize (+ Resize for the 64×64 conv models, with 2 workers, as the DCGAN
    tutorial does), each batch copied to the device, fp32, eager, torch's default Adam,
    `.item()` of both losses every step; the G step reuses the D step's fakes (n_critic = 1).
(b) ganrun: GanStep + BatchSource (uint8 on the device, scaling and flips in the step) under the
    configured precision / compile / channels_last, driven by ganrun's own train_loop (stats read
    every log_every steps), with everything else the model's config brings (loss, n_critic).

and prints images/s for both (images per generator step × steps/s), the ratio, and the achieved
TFLOP/s (one step's FLOPs counted with torch.utils.flop_counter, each path its own: ganrun's
step draws fresh noise for the G phase, so it does one more G forward than the tutorial). It
also times `ganrun train` from process start to the first logged training step. Results go to
a JSON file. CPU figures say nothing about the GPU targets; run it on the GPU for those.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

DEFAULT_MODELS = ("mlp", "dcgan", "wgan_gp")


@dataclass(frozen=True)
class Recipe:
    image_size: Optional[int]  # resize to this (pixels); None: native 28×28
    loader_workers: int  # the tutorial's DataLoader workers


RECIPES = {
    "mlp": Recipe(image_size=None, loader_workers=0),  # the classic MLP tutorial
    "cgan": Recipe(image_size=None, loader_workers=0),
    "dcgan": Recipe(image_size=64, loader_workers=2),  # pytorch/examples dcgan: Resize(64), 2 workers
    "wgan_gp": Recipe(image_size=64, loader_workers=2),
}
DEFAULT_RECIPE = Recipe(image_size=64, loader_workers=2)


# -- data --------------------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed MNIST-format IDX file: magic 0x0000080<ndim>, big-endian dims, uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


def synthetic_fashion_mnist(root: Path, n: int, seed: int = 0) -> Path:
    """Fashion-MNIST-shaped uint8 data (n × 28 × 28, 10 classes) as IDX files under `root`."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    write_idx(root / "train-images-idx3-ubyte", images)
    write_idx(root / "train-labels-idx1-ubyte", labels)
    write_idx(root / "t10k-images-idx3-ubyte", images[:16])
    write_idx(root / "t10k-labels-idx1-ubyte", labels[:16])
    return root


class TutorialImages(torch.utils.data.Dataset):
    """What torchvision.datasets.FashionMNIST.__getitem__ does: a uint8 array → PIL image → transform."""

    def __init__(self, data: torch.Tensor, labels: Optional[torch.Tensor], transform: Callable) -> None:
        self.images = data.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.images[i]
        img = Image.fromarray(img[..., 0], mode="L") if img.shape[-1] == 1 else Image.fromarray(img, mode="RGB")
        return self.transform(img), (0 if self.labels is None else int(self.labels[i]))


def tutorial_loader(data: torch.Tensor, labels: Optional[torch.Tensor], batch_size: int,
                    image_size: Optional[int], workers: int, seed: int) -> torch.utils.data.DataLoader:
    from torchvision import transforms

    channels = data.shape[1]
    steps = [transforms.Resize(image_size)] if image_size else []
    steps += [transforms.ToTensor(), transforms.Normalize((0.5,) * channels, (0.5,) * channels)]
    return torch.utils.data.DataLoader(
        TutorialImages(data, labels, transforms.Compose(steps)), batch_size=batch_size, shuffle=True,
        num_workers=workers, drop_last=True, generator=torch.Generator().manual_seed(seed),
    )


# -- the tutorial loop -------------------------------------------------------------------------

class TutorialLoop:
    """The usual GAN loop: D on reals and detached fakes, then G through D; .item() every step."""

    def __init__(self, G: nn.Module, D: nn.Module, loss, optimizer_cfg, loader, n_critic: int,
                 device: torch.device) -> None:
        self.G, self.D, self.loss, self.loader, self.n_critic, self.device = G, D, loss, loader, n_critic, device
        betas = tuple(optimizer_cfg.betas)
        g_lr = optimizer_cfg.g_lr or optimizer_cfg.lr
        d_lr = optimizer_cfg.d_lr or optimizer_cfg.lr
        self.opt_G = torch.optim.Adam(G.parameters(), lr=g_lr, betas=betas)
        self.opt_D = torch.optim.Adam(D.parameters(), lr=d_lr, betas=betas)
        self.bce = nn.BCEWithLogitsLoss()
        self.conditional = bool(G.num_classes)
        self._it = iter(loader)
        self.history: list[tuple[float, float]] = []

    def _next(self):
        try:
            x, y = next(self._it)
        except StopIteration:  # a new epoch (a tutorial's outer `for epoch in ...`)
            self._it = iter(self.loader)
            x, y = next(self._it)
        return x.to(self.device), y.to(self.device)

    def _d_loss(self, real_logits, fake_logits):
        if self.loss.objective.name == "non_saturating":
            return (self.bce(real_logits, torch.ones_like(real_logits))
                    + self.bce(fake_logits, torch.zeros_like(fake_logits)))
        return self.loss.objective.d_loss(real_logits, fake_logits, 1.0, 0.0)

    def _g_loss(self, fake_logits):
        if self.loss.objective.name == "non_saturating":
            return self.bce(fake_logits, torch.ones_like(fake_logits))
        return self.loss.objective.g_loss(fake_logits)

    def _gradient_penalty(self, real, fake, c):
        alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
        x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        out = self.D(x, c)
        (grad,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out), create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def step(self) -> None:
        G, D = self.G, self.D
        for _ in range(self.n_critic):
            real, labels = self._next()
            c = labels if self.conditional else None
            z = torch.randn(real.shape[0], G.latent_dim, device=self.device)
            fake = G(z, c)
            d_loss = self._d_loss(D(real, c), D(fake.detach(), c))
            total = d_loss
            gp = self.loss.get("gradient_penalty")
            if gp is not None:
                total = d_loss + gp.weight * self._gradient_penalty(real, fake.detach(), c)
            self.opt_D.zero_grad()
            total.backward()
            self.opt_D.step()
        if self.n_critic > 1:  # WGAN-GP tutorials draw fresh noise for the generator step
            fake = G(torch.randn(real.shape[0], G.latent_dim, device=self.device), c)
        g_loss = self._g_loss(D(fake, c))
        self.opt_G.zero_grad()
        g_loss.backward()
        self.opt_G.step()
        self.history.append((d_loss.item(), g_loss.item()))  # the tutorial's per-step logging (a host sync)


# -- measuring ---------------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: totals only. The tracker's backward hooks
    break `torch.autograd.grad` on a leaf input, which is how gradient penalties are computed."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of `fn` (forward and backward matmuls/convolutions), by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return int(counter.get_total_flops())


def figures(images_per_step: int, steps: int, seconds: float, flops_per_step: int) -> dict[str, float]:
    return {
        "images_per_s": images_per_step * steps / seconds,
        "step_ms": 1000 * seconds / steps,
        "seconds": seconds,
        "flops_per_step": flops_per_step,
        "tflops": flops_per_step * steps / seconds / 1e12,
    }


def time_baseline(loop: TutorialLoop, batch_size: int, steps: int, warmup: int, device: torch.device) -> dict:
    flops = count_flops(loop.step)  # the first warm-up step, counted
    for _ in range(max(warmup - 1, 0)):
        loop.step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loop.step()
    synchronize(device)
    out = figures(batch_size, steps, time.perf_counter() - t0, flops)
    out["final_losses"] = list(loop.history[-1])
    return out


class NoJobs:
    """train_loop's periodic host work, switched off: only the step and the stats reads are timed."""

    def log(self, step, values):
        pass

    def samples(self, step):
        pass

    def evaluate(self, step):
        return None

    def checkpoint(self, step, nimg):
        pass


def time_ganrun(step_fn, source, batch_size: int, steps: int, warmup: int, log_every: int,
                device: torch.device) -> dict:
    from ganrun.observe.stats import Stats
    from ganrun.train.loop import Schedule, train_loop

    stats = Stats()

    def run(start: int, end: int) -> dict[str, float]:
        return train_loop(step_fn, source.next, stats,
                          Schedule(end, log_every, 0, 0, 0), NoJobs(), start_step=start, start_nimg=0,
                          images_per_batch=batch_size, progress=lambda step: None, should_stop=lambda: False)

    run(0, warmup)  # warm-up: graph capture / compilation happen here
    synchronize(device)
    t0 = time.perf_counter()
    last = run(warmup, warmup + steps)
    synchronize(device)
    out = figures(batch_size, steps, time.perf_counter() - t0, 0)
    out["final_losses"] = [last.get("loss/D", math.nan), last.get("loss/G", math.nan)]
    return out


# -- one model ---------------------------------------------------------------------------------

def compose_config(model: str, args, device: torch.device, data_root: Optional[str]):
    import ganrun.losses  # noqa: F401  (the regularizers store the loss schema)
    import ganrun.models  # noqa: F401  (the model families store their schemas)
    from ganrun.config.compose import compose, to_typed

    recipe = RECIPES.get(model, DEFAULT_RECIPE)
    overrides = [f"model={model}", f"device={device.type}", f"trainer.batch_size={args.batch_size}",
                 f"device.precision={args.precision}", f"trainer.compile={args.compile}",
                 f"device.channels_last={str(args.channels_last).lower()}", f"seed={args.seed}",
                 f"trainer.log_every={args.log_every}"]
    if recipe.image_size:
        overrides += [f"dataset.image_size={recipe.image_size}", f"model.image_size={recipe.image_size}"]
    if data_root:
        overrides.append(f"dataset.root={data_root}")
    if args.limit:
        overrides.append(f"dataset.limit={args.limit}")
    overrides += args.set
    return to_typed(compose("train", overrides)), overrides, recipe


def bench_model(model: str, args, device: torch.device, data_root: Optional[str]) -> dict:
    from ganrun.data import build_dataset
    from ganrun.losses import build_loss
    from ganrun.models import build_models
    from ganrun.optim import build_optimizers
    from ganrun.runtime import seed_everything
    from ganrun.train.build import build_run
    from ganrun.train.step import GanStep

    c, overrides, recipe = compose_config(model, args, device, data_root)
    dataset = build_dataset(c.dataset)  # resized once at load for the conv models
    native = build_dataset(replace(c.dataset, image_size=None)) if recipe.image_size else dataset
    spec, B, n_critic = dataset.spec, c.trainer.batch_size, c.trainer.n_critic
    workers = recipe.loader_workers if args.baseline_workers is None else args.baseline_workers
    result: dict[str, Any] = {"model": model, "status": "ok", "overrides": overrides,
                              "image_shape": list(spec.shape), "n_critic": n_critic, "dataset_size": spec.size,
                              "loss": c.loss.name}

    # (a) the tutorial loop
    seed_everything(c.seed)
    G, D = build_models(c.model, spec)
    loop = TutorialLoop(G.to(device), D.to(device), build_loss(c.loss), c.optimizer,
                        tutorial_loader(native.data, native.labels, B, recipe.image_size, workers, c.seed),
                        n_critic, device)
    print(f"  {model}: timing the tutorial loop ({workers} loader workers) ...", flush=True)
    result["baseline"] = {**time_baseline(loop, B, args.steps, args.warmup, device), "loader_workers": workers}
    del loop, G, D

    # (b) ganrun's trainer, built as `ganrun train` builds it
    run = build_run(c, device, dataset=dataset)
    source = run.source
    # FLOPs of one eager step, on copies (the timed models stay untouched)
    G2, D2 = copy.deepcopy(run.G), copy.deepcopy(run.D)
    flop_step = GanStep(G2, D2, copy.deepcopy(run.G_ema), run.loss, *build_optimizers(c.optimizer, G2, D2),
                        run.settings, device)
    flops = count_flops(lambda: flop_step(run.batches(flop_step), 0))
    del flop_step, G2, D2
    messages: list[str] = []
    step_fn = run.step_fn(c.trainer.compile, c.device.channels_last, notify=messages.append)
    for text in messages:
        print(f"  {model}: {text}", flush=True)
    print(f"  {model}: timing ganrun ({c.device.precision}, compile {c.trainer.compile}) ...", flush=True)
    timed = time_ganrun(step_fn, source, B, args.steps, args.warmup, c.trainer.log_every, device)
    timed.update(flops_per_step=flops, tflops=flops * args.steps / timed["seconds"] / 1e12)
    compile_used = getattr(step_fn, "mode", "none")
    if getattr(step_fn, "failed", None):
        compile_used = "none"
    result["ganrun"] = {**timed, "precision": c.device.precision, "compile": c.trainer.compile,
                        "compile_used": compile_used, "channels_last": c.device.channels_last,
                        "device_resident": source.resident, "messages": messages}
    result["ratio"] = result["ganrun"]["images_per_s"] / result["baseline"]["images_per_s"]
    return result


def skip_reason(model: str) -> Optional[str]:
    from ganrun.config.compose import CONFIG_DIR
    from ganrun.models import MODELS

    if model not in MODELS:
        return f"model '{model}' is not registered in this ganrun (registered: {', '.join(MODELS.names())})"
    if not (CONFIG_DIR / "model" / f"{model}.yaml").exists():
        return f"model '{model}' has no configs/model/{model}.yaml"
    return None


# -- start-up ----------------------------------------------------------------------------------

def time_startup(args, device: torch.device, data_root: Optional[str], workdir: Path) -> dict:
    """`ganrun train` in a fresh process: seconds from spawn to the first logged training step."""
    import ganrun

    root = Path(ganrun.__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    overrides = [f"device={device.type}", f"trainer.batch_size={args.batch_size}",
                 f"device.precision={args.precision}", f"trainer.compile={args.compile}",
                 "trainer.max_steps=1", "trainer.log_every=1", "trainer.sample_every=0",
                 "logger.progress=plain", "logger.print_config=false", "logger.tensorboard=false",
                 f"hydra.run.dir={workdir / 'startup_run'}"]
    if data_root:
        overrides.append(f"dataset.root={data_root}")
    if args.limit:
        overrides.append(f"dataset.limit={args.limit}")
    command = [sys.executable, "-m", "ganrun", "train", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=workdir)
    first: Optional[float] = None
    output = []
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)
        if first is None and line.startswith("step 1/"):
            first = time.perf_counter() - t0
    code = proc.wait()
    total = time.perf_counter() - t0
    out = {"first_step_s": first, "total_s": total, "returncode": code, "command": ["ganrun", "train", *overrides]}
    if code != 0 or first is None:
        out["output_tail"] = "".join(output[-10:])
    return out


# -- report ------------------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def table(report: dict) -> str:
    head = (f"{'model':<9}{'baseline img/s':>16}{'ganrun img/s':>15}{'ratio':>9}"
            f"{'baseline TFLOP/s':>18}{'ganrun TFLOP/s':>16}   notes")
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        if r["status"] != "ok":
            lines.append(f"{r['model']:<9}{'-':>16}{'-':>15}{'-':>9}{'-':>18}{'-':>16}   skipped: {r['note']}")
            continue
        b, g = r["baseline"], r["ganrun"]
        note = f"{'×'.join(map(str, r['image_shape']))}, n_critic {r['n_critic']}, compile used: {g['compile_used']}"
        lines.append(f"{r['model']:<9}{b['images_per_s']:>16,.0f}{g['images_per_s']:>15,.0f}{r['ratio']:>8.2f}×"
                     f"{b['tflops']:>18.4f}{g['tflops']:>16.4f}   {note}")
    return "\n".join(lines)


def resolve_auto(args, device: torch.device) -> None:
    on_cuda = device.type == "cuda"
    if args.precision == "auto":
        args.precision = "bf16" if on_cuda else "fp32"
    if args.compile == "auto":
        args.compile = "graph" if on_cuda else "none"
    if args.channels_last == "auto":
        args.channels_last = on_cuda
    else:
        args.channels_last = args.channels_last == "true"


def parse_args(argv: Optional[list[str]] = None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names (registry)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=200, help="timed generator steps per path")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (graph capture happens here)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="ganrun's precision (auto: bf16 on CUDA, fp32 on CPU); the baseline is always fp32")
    p.add_argument("--compile", default="auto", choices=["auto", "none", "graph", "inductor"],
                   help="ganrun's trainer.compile (auto: graph on CUDA, none on CPU)")
    p.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"],
                   help="ganrun's device.channels_last (auto: on for CUDA; conv models only)")
    p.add_argument("--data", default="fashion_mnist", choices=["fashion_mnist", "synthetic"],
                   help="the real set (found as `ganrun train` finds it) or generated Fashion-MNIST-shaped uint8")
    p.add_argument("--synthetic-size", type=int, default=60_000, help="images in the synthetic set")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images (dataset.limit)")
    p.add_argument("--baseline-workers", type=int, default=None,
                   help="DataLoader workers of the tutorial loop (default: 0 for mlp, 2 for the 64×64 models)")
    p.add_argument("--log-every", type=int, default=50, help="ganrun's trainer.log_every (its host sync)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra `ganrun train` override for every model, e.g. --set loss.gp_weight=10 (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--startup", action=argparse.BooleanOptionalAction, default=True,
                   help="also time `ganrun train` from process start to the first training step")
    p.add_argument("--out", default="outputs/bench/throughput.json", help="where the JSON report goes")
    args = p.parse_args(argv)
    for name in ("batch_size", "steps", "synthetic_size", "log_every"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.warmup < 1:
        p.error("--warmup must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> dict:
    from ganrun.errors import UserError

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmark: error: --device cuda but no CUDA device is available", file=sys.stderr)
        sys.exit(2)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    resolve_auto(args, device)
    from ganrun.train.fast import GRAPH_WARMUP

    if args.compile == "graph" and device.type == "cuda" and args.warmup <= GRAPH_WARMUP:
        print(f"note: --warmup {args.warmup} <= {GRAPH_WARMUP} eager warm-up steps before capture: "
              "the capture falls inside the timed steps", flush=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    report: dict[str, Any] = {
        "device": device.type, "device_name": device_description(device), "torch": torch.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "precision": args.precision,
        "compile": args.compile, "channels_last": args.channels_last, "data": args.data,
        "baseline": "torchvision DataLoader (PIL, ToTensor+Normalize), fp32, eager, default Adam, .item() each step",
        "results": [], "startup": None,
    }
    print(f"throughput on {report['device_name']}, torch {torch.__version__}: batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up; ganrun: {args.precision}, compile {args.compile}, "
          f"channels_last {'on' if args.channels_last else 'off'}; data: {args.data}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ganrun-bench-") as tmp:
        workdir = Path(tmp)
        data_root = None
        if args.data == "synthetic":
            data_root = str(synthetic_fashion_mnist(workdir / "data", args.synthetic_size, args.seed))
        try:
            for model in models:
                reason = skip_reason(model)
                if reason:
                    print(f"  {model}: skipped: {reason}", flush=True)
                    report["results"].append({"model": model, "status": "skipped", "note": reason})
                    continue
                report["results"].append(bench_model(model, args, device, data_root))
        except UserError as exc:
            print(f"benchmark: error: {exc}", file=sys.stderr)
            sys.exit(2)
        if args.startup:
            print("  timing `ganrun train` start-up to the first step ...", flush=True)
            report["startup"] = time_startup(args, device, data_root, workdir)
    print()
    print(table(report))
    s = report["startup"]
    if s:
        if s["first_step_s"] is not None:
            print(f"\nCLI start-up to the first training step (mlp, {device.type}): {s['first_step_s']:.1f} s "
                  f"(whole 1-step run {s['total_s']:.1f} s)")
        else:
            print(f"\nCLI start-up: the run did not reach a first step (exit {s['returncode']}):\n"
                  f"{s.get('output_tail', '')}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
