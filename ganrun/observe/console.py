"""The terminal: a rich progress bar on a TTY, plain periodic lines elsewhere (CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import Optional

SHOWN = ("loss/D", "loss/G", "D/D(x)", "D/D(G(z))")


def _format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _summary(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {values[k]:.4g}" for k in SHOWN if k in values)


class Console:
    """Progress for one run. mode: rich, plain or none ("auto" picks rich on a terminal)."""

    def __init__(self, mode: str, total_steps: int, start_step: int = 0, stream=None) -> None:
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "rich" if self.stream.isatty() else "plain"
        self.mode = mode
        self.total = total_steps
        self.start_step = start_step
        self.t0 = time.perf_counter()
        self._progress = None
        if mode == "rich":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(bar_width=24), MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"), TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(),
                TextColumn("{task.fields[losses]}"), refresh_per_second=4, transient=False,
            )
            self._task = self._progress.add_task("train", total=total_steps, completed=start_step, speed="", losses="")
            self._progress.start()

    def advance(self, step: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step)

    def log(self, step: int, values: dict[str, float]) -> None:
        speed = values.get("speed/images_per_s")
        speed_text = f"{speed / 1000:.1f}k img/s" if speed else ""
        if self._progress is not None:  # the bar has room for the two losses only
            short = "  ".join(f"{k[5:]} {values[k]:.3g}" for k in ("loss/D", "loss/G") if k in values)
            self._progress.update(self._task, completed=step, speed=speed_text, losses=short)
        elif self.mode == "plain":
            elapsed = time.perf_counter() - self.t0
            done = max(step - self.start_step, 1)
            eta = elapsed / done * (self.total - step)
            print(f"step {step}/{self.total}  {speed_text}  {_summary(values)}  eta {_format_duration(eta)}",
                  file=self.stream, flush=True)

    def message(self, text: str, style: str = "") -> None:
        if self._progress is not None:
            self._progress.console.print(text, style=style or None)
        elif self.mode != "none" or style == "warning":
            print(text, file=self.stream if style != "warning" else sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def print_config_tree(config: dict, stream=None) -> None:
    """The resolved config as a rich tree (plain text when not on a terminal)."""
    from rich.console import Console as RichConsole
    from rich.tree import Tree

    import yaml

    tree = Tree("config", guide_style="dim")
    for group, value in config.items():
        branch = tree.add(f"[bold]{group}")
        text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).strip() if isinstance(value, dict) else str(value)
        branch.add(text)
    RichConsole(file=stream or sys.stdout, highlight=False, soft_wrap=True).print(tree)


class FractionProgress:
    """A bar for work measured as a fraction (fitting the feature network): rich or plain lines."""

    def __init__(self, label: str, mode: str = "auto", stream=None) -> None:
        self.label = label
        self.stream = stream or sys.stdout
        self.mode = ("rich" if self.stream.isatty() else "plain") if mode == "auto" else mode
        self._progress = None
        self._last_print = -1.0
        if self.mode == "rich":
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self._task = self._progress.add_task(label, total=1.0, info="")
            self._progress.start()

    def __call__(self, fraction: float, info: dict) -> None:
        text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
        if self._progress is not None:
            self._progress.update(self._task, completed=fraction, info=text)
        elif self.mode == "plain" and (fraction - self._last_print >= 0.1 or fraction >= 1.0):
            self._last_print = fraction
            print(f"{self.label}: {fraction:6.1%}  {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
