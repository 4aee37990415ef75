"""`ganrun eval`: score a checkpoint, print a table, write its metrics record and a grid, log to TensorBoard.

The record (`metrics_<checkpoint>_<step>_<protocol>_seed<seed>.json`) and the grid are named after what
produced them and written atomically; an existing one is replaced only with overwrite=true.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ganrun import memory
from ganrun.config.compose import to_typed
from ganrun.config.schema import EvalAppConfig
from ganrun.evaluation import Evaluator, metric_tag
from ganrun.observe.console import FractionProgress
from ganrun.observe.images import render
from ganrun.observe.tensorboard import TensorBoard
from ganrun.outputs import check_target, write_image, write_json
from ganrun.runtime import generate, grid_rows, grid_size, pick_device, sample_inputs
from ganrun.train.loaded import load_run
from ganrun.train.signals import phase

GRID_SAMPLES = 64  # about this many samples in the eval grid (one row per class when conditional)


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
    c: EvalAppConfig = to_typed(cfg, EvalAppConfig)
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
    k = run.G.num_classes
    n = grid_size(GRID_SAMPLES, k)
    z, labels = sample_inputs(n, run.G.latent_dim, k, c.seed)
    fakes = generate(run.G, z, labels)
    ref = None if run.spec.is_image else torch.tensor(run.spec.centers)
    write_image(grid_path, render(fakes, ref, grid_rows(n, k)))

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
