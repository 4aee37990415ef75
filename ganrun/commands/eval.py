"""`ganrun eval`: score a checkpoint, print a table, write its metrics record and a grid, log to TensorBoard.

The record (`metrics_<checkpoint>_<step>_<protocol>_seed<seed>.json`) and the grid are named after what
produced them and written atomically; an existing one is replaced only with overwrite=true.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ganrun import memory
from ganrun.config.compose import to_typed
from ganrun.config.schema import EvalAppConfig
from ganrun.evaluation import Evaluator, metric_tag
from ganrun.observe.console import FractionProgress
from ganrun.observe.images import render
from ganrun.observe.tensorboard import TensorBoard
from ganrun.data import build_dataset
from ganrun.outputs import check_target, write_image, write_json
from ganrun.runtime import SCATTER_SAMPLES, generate, grid_rows, grid_size, pick_device, sample_inputs
from ganrun.train.loaded import load_run
from ganrun.train.signals import phase

GRID_SAMPLES = 64  # about this many samples in the eval grid (one row per class when conditional)


def print_table(results: dict[str, float], title: str, floor: dict[str, float] | None = None,
                accuracy: float | None = None) -> None:
    """The metrics, each beside its real-vs-real floor where there is one; the feature net's accuracy below."""
    from rich.console import Console
    from rich.table import Table

    floor = floor or {}
    table = Table(title=title, caption=None if accuracy is None else
                  f"feature network test accuracy {accuracy:.2%}; floor: real data scored the same way")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("floor (real vs real)", justify="right")
    for name, value in results.items():
        table.add_row(name, f"{value:.6g}", f"{floor[name]:.6g}" if name in floor else "")
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
    floor = evaluator.floor()
    accuracy = evaluator.net.info.get("test_accuracy") if evaluator.net is not None else None
    record = {
        "checkpoint": str(run.checkpoint_path),
        "step": run.step,
        "generator": "G_ema" if run.state.get("G_ema") else "G",
        "metrics": results,
        "floor": floor,  # the same metrics for real data against the reference (real vs real)
        "feature_network_accuracy": accuracy,  # test accuracy of the domain classifier (None: 2-D mixtures)
        "protocol": evaluator.record(),
    }
    write_json(metrics_path, record)

    # a sample grid from the evaluated generator, next to the checkpoint
    k = run.G.num_classes
    n = grid_size(GRID_SAMPLES if run.spec.is_image else SCATTER_SAMPLES, k)  # 2-D: as many as training draws
    z, labels = sample_inputs(n, run.G.latent_dim, k, c.seed)
    fakes = generate(run.G, z, labels)
    ref = None if run.spec.is_image else build_dataset(run.dataset_cfg, split="test").data[: SCATTER_SAMPLES * 4]
    write_image(grid_path, render(fakes, ref, grid_rows(n, k)))

    if c.logger.tensorboard:
        tb = TensorBoard(run.run_dir)
        tb.scalars(run.step, {metric_tag(k): v for k, v in results.items() if not k.startswith("eval/")})
        tb.close()
    if c.logger.progress != "none":
        print_table(results, f"{run.model_cfg.name} on {run.spec.name}, step {run.step:,} ({record['generator']})",
                    floor, accuracy)
        print(f"wrote {metrics_path}")
    return record


def run(cfg: DictConfig) -> dict[str, Any]:
    return evaluate(cfg)
