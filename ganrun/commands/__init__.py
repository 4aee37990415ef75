"""The CLI's commands: `ganrun <name>` runs COMMANDS.get(name).run on configs/<name>.yaml.

Adding a command is one entry here and one primary config. Each entry names its functions as
"module:function" strings, imported on first use, so `ganrun --help` does not load torch:

    run      the Hydra task function: the composed DictConfig → result; the work itself is an
             importable function (`train(cfg)`, ...) that tests call directly
    prepare  overrides → extra overrides, run before Hydra starts (the run-dir guard)

Commands import downward only (runtime, train, evaluation, observe, ...), never each other.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ganrun.registry import Registry


def resolve(path: str) -> Callable[..., Any]:
    """"package.module:function" → the function (its module imported now)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Command:
    run: str  # "module:function": Hydra task function, DictConfig -> result
    help: str
    actions: tuple[str, ...] = ()  # sub-commands (`ganrun features fit`), passed as `action=<name>`
    prepare: str = "ganrun.rundir:check_run_dir"  # "module:function": overrides -> extra overrides
    positional: str = ""  # a first argument that is no override is this key's value (`ganrun report DIR` → dir=DIR)


COMMANDS: Registry[Command] = Registry("command")

COMMANDS.register("train")(Command("ganrun.commands.train:run", "train a GAN",
                                   prepare="ganrun.rundir:check_train_run_dir"))
COMMANDS.register("sample")(Command("ganrun.commands.sample:run", "write a PNG grid of samples from a checkpoint"))
COMMANDS.register("eval")(Command("ganrun.commands.eval:run",
                                  "score a checkpoint: FID/KID/precision-recall, a table and metrics.json"))
COMMANDS.register("features")(Command("ganrun.commands.features:run",
                                      "fit (and cache) the domain feature network for a dataset", ("fit",)))
COMMANDS.register("export")(Command("ganrun.commands.export:run",
                                    "write the generator as ONNX, TorchScript or a state dict, checked for parity"))
COMMANDS.register("report")(Command("ganrun.commands.report:run",
                                    "rank the runs of a sweep dir, run dir or outputs/: table, report.md/csv/png",
                                    positional="dir"))
