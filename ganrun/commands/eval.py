"""`ganrun eval`: score a checkpoint, print a table, write metrics.json and a grid, log to TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ganrun.config.compose import to_typed
from ganrun.config.schema import EvalAppConfig
from ganrun.evaluation import Evaluator, metric_tag
from ganrun.observe.console import FractionProgress
from ganrun.observe.images import render, save_png
from ganrun.observe.tensorboard import TensorBoard
from ganrun.runtime import generate, grid_rows, grid_size, pick_device, sample_inputs
from ganrun.train.loaded import load_run

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
    progress = FractionProgress("fitting the domain classifier", c.logger.progress)
    try:
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
    out_dir = run.checkpoint_path.parent
    (out_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")

    # a sample grid from the evaluated generator, next to the checkpoint
    k = run.G.num_classes
    n = grid_size(GRID_SAMPLES, k)
    z, labels = sample_inputs(n, run.G.latent_dim, k, c.seed)
    fakes = generate(run.G, z, labels)
    ref = None if run.spec.is_image else torch.tensor(run.spec.centers)
    save_png(render(fakes, ref, grid_rows(n, k)), out_dir / f"eval_samples_{run.step:07d}.png")

    if c.logger.tensorboard:
        tb = TensorBoard(run.run_dir)
        tb.scalars(run.step, {metric_tag(k): v for k, v in results.items() if not k.startswith("eval/")})
        tb.close()
    if c.logger.progress != "none":
        print_table(results, f"{run.model_cfg.name} on {run.spec.name}, step {run.step:,} ({record['generator']})")
        print(f"wrote {out_dir / 'metrics.json'}")
    return record


def run(cfg: DictConfig) -> dict[str, Any]:
    return evaluate(cfg)
