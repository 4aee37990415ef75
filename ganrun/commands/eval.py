"""`ganrun eval`: score a checkpoint, print a table, write its metrics record and a grid, log to TensorBoard.

The record (`metrics_<checkpoint>_<step>_<protocol>_seed<seed>.json`) and the grid are named after what
produced them and written atomically; an existing one is replaced only with overwrite=true.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganrun import memory
from ganrun.commands.evaluation import Evaluator, metric_tag
from ganrun.commands.runs import load_run
from ganrun.commands.train import generate, pick_device, render
from ganrun.config.schema import EvalAppConfig
from ganrun.config.validate import validate
from ganrun.observe.console import FractionProgress
from ganrun.outputs import check_target, write_image, write_json
from ganrun.observe.tensorboard import TensorBoard
from ganrun.train.signals import phase


def print_table(results: dict[str, float], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results.items():
        table.add_row(name, f"{value:.6g}")
    Console(highlight=False).print(table)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    c: EvalAppConfig = OmegaConf.to_object(cfg)
    validate(c)
    device = pick_device(c.device.name)
    run = load_run(c.checkpoint, device)
    memory.require("eval.num_samples", c.eval.num_samples, 8 * math.prod(run.spec.shape), "cpu",
                   what="the evaluation samples")
    # named after what produced them (checkpoint, step, protocol, seed), so another evaluation never replaces them
    protocol = f"{c.eval.num_samples}-{c.eval.features}" if run.spec.is_image else "mixture"
    stem = f"{run.checkpoint_path.stem}_{run.step:07d}_{protocol}_seed{c.seed}"
    out_dir = run.checkpoint_path.parent
    metrics_path = check_target(out_dir / f"metrics_{stem}.json", "the result", c.overwrite)
    grid_path = check_target(out_dir / f"eval_samples_{stem}.png", "the result", c.overwrite, image=True)
    progress = FractionProgress("fitting the domain classifier", c.logger.progress)
    try:
        with phase("the feature-network fit and the evaluation (no result was written)"):
            evaluator = Evaluator(c.eval, run.dataset_cfg, run.spec, device, progress=progress)
    finally:
        progress.close()
    results = evaluator.evaluate(run.G)
    record = {
        "checkpoint": str(run.checkpoint_path),
        "step": run.step,
        "generator": "G_ema" if run.state.get("G_ema") else "G",
        "metrics": results,
        "protocol": evaluator.record(),
    }
    write_json(metrics_path, record)

    # a sample grid from the evaluated generator, next to the checkpoint
    n = 64
    gen = torch.Generator().manual_seed(c.seed)
    z = torch.randn(n, run.G.latent_dim, generator=gen).to(device)
    labels = (torch.arange(n) * run.G.num_classes // n).to(device) if run.G.num_classes else None
    fakes = generate(run.G, z, labels)
    ref = fakes if run.spec.is_image else torch.tensor(run.spec.centers)
    write_image(grid_path, render(fakes, run.spec, ref, None))

    if c.logger.tensorboard:
        tb = TensorBoard(run.run_dir)
        tb.scalars(run.step, {metric_tag(k): v for k, v in results.items() if not k.startswith("eval/")})
        tb.close()
    if c.logger.progress != "none":
        print_table(results, f"{run.model_cfg.name} on {run.spec.name}, step {run.step:,} ({record['generator']})")
        print(f"wrote {metrics_path}")
    return record


def run(cfg: DictConfig) -> dict[str, Any]:
    return evaluate(cfg)
