"""The CLI's commands: `ganrun <name>` runs COMMANDS.get(name).run on configs/<name>.yaml.

Adding a command is one entry here and one primary config. Each `run` takes the composed
DictConfig from Hydra; the work itself is an importable function (`train(cfg)`, ...) that
tests call directly. Imports stay lazy so `ganrun --help` does not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ganrun.registry import Registry


@dataclass(frozen=True)
class Command:
    run: Callable[[Any], Any]  # Hydra task function: DictConfig -> result
    help: str
    actions: tuple[str, ...] = ()  # sub-commands (`ganrun features fit`), passed as `action=<name>`
    positional: str = ""  # a first argument without `=` is this key's value (`ganrun report DIR` → dir=DIR)


COMMANDS: Registry[Command] = Registry("command")


def _train(cfg: Any) -> Any:
    from ganrun.commands.train import run

    return run(cfg)


COMMANDS.register("train")(Command(_train, "train a GAN"))


def _sample(cfg: Any) -> Any:
    from ganrun.commands.sample import run

    return run(cfg)


COMMANDS.register("sample")(Command(_sample, "write a PNG grid of samples from a checkpoint"))


def _eval(cfg: Any) -> Any:
    from ganrun.commands.eval import run

    return run(cfg)


COMMANDS.register("eval")(Command(_eval, "score a checkpoint: FID/KID/precision-recall, a table and metrics.json"))


def _features(cfg: Any) -> Any:
    from ganrun.commands.features import run

    return run(cfg)


COMMANDS.register("features")(Command(_features, "fit (and cache) the domain feature network for a dataset", ("fit",)))


def _report(cfg: Any) -> Any:
    from ganrun.commands.report import run

    return run(cfg)


COMMANDS.register("report")(Command(_report, "rank the runs of a sweep dir, run dir or outputs/: table, report.md/csv/png",
                                    positional="dir"))
