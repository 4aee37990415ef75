"""The terminal: a rich progress bar on a TTY, plain periodic lines elsewhere (CI, pipes).

Every line the console shows (messages, warnings, Python warnings raised during the run) and a
plain progress line per logged step also go to the run's `train.log`, whatever the mode.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import Optional

SHOWN = ("loss/D", "loss/G", "D/D(x)", "D/D(G(z))")


def _format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _summary(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {values[k]:.4g}" for k in SHOWN if k in values)


def format_rate(per_second: float, unit: str) -> str:
    """A rate with 2-3 significant digits and an SI prefix: 0.42 img/s, 37 img/s, 1.2k img/s, 3.4M img/s.

    Steps slower than one a second read better as seconds per step (`4.2 s/step`).
    """
    if unit == "steps" and 0 < per_second < 1:
        return f"{1 / per_second:.2g} s/step"
    for scale, prefix in ((1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            value = per_second / scale
            return f"{value:.1f}{prefix} {unit}/s" if value < 10 else f"{value:.0f}{prefix} {unit}/s"
    if per_second >= 10:
        return f"{per_second:.0f} {unit}/s"
    return f"{per_second:.2g} {unit}/s"


class Console:
    """Progress for one run. mode: rich, plain or none ("auto" picks rich on a terminal)."""

    def __init__(self, mode: str, total_steps: int, start_step: int = 0, stream=None,
                 log_file: Optional[Path] = None) -> None:
        self.stream = stream or sys.stdout
        self._file = None
        self._log_file = log_file
        self._showwarning = None
        if log_file is not None:  # appended: a resumed run continues its log
            self._file = open(log_file, "a", buffering=1, encoding="utf-8")
            self._showwarning = warnings.showwarning
            warnings.showwarning = self._warning
        if mode == "auto":
            mode = "rich" if self.stream.isatty() else "plain"
        self.mode = mode
        self.total = total_steps
        self.start_step = start_step
        self.t0 = time.perf_counter()
        self._last = (self.t0, start_step)  # time and step of the previous log line
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
        now = time.perf_counter()
        last_time, last_step = self._last
        self._last = (now, step)
        speed = values.get("speed/images_per_s")
        rates = [format_rate(speed, "img") if speed else "",
                 format_rate((step - last_step) / max(now - last_time, 1e-9), "steps") if step > last_step else ""]
        speed_text = "  ".join(r for r in rates if r)
        elapsed = now - self.t0
        eta = elapsed / max(step - self.start_step, 1) * (self.total - step)
        line = f"step {step}/{self.total}  {speed_text}  {_summary(values)}  eta {_format_duration(eta)}"
        self._to_file(line)
        if self._progress is not None:  # the bar has room for the two losses only
            short = "  ".join(f"{k[5:]} {values[k]:.3g}" for k in ("loss/D", "loss/G") if k in values)
            self._progress.update(self._task, completed=step, speed=rates[0] or rates[1], losses=short)
        elif self.mode == "plain":
            print(line, file=self.stream, flush=True)

    def record(self, text: str) -> None:
        """A line for train.log only (the CLI shows it on stderr itself: the reason a run ended)."""
        self._to_file(text)

    def _to_file(self, text: str) -> None:
        if self._file is not None:
            self._file.write(text + "\n")
        elif self._log_file is not None:  # after close: the run's last words
            with open(self._log_file, "a", encoding="utf-8") as f:
                f.write(text + "\n")

    def _warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """Python warnings during the run: shown as before, and kept in train.log."""
        self._to_file(warnings.formatwarning(message, category, filename, lineno, line).rstrip())
        self._showwarning(message, category, filename, lineno, file, line)

    def message(self, text: str, style: str = "") -> None:
        self._to_file(text)
        if self._progress is not None:
            self._progress.console.print(text, style=style or None)
        elif self.mode != "none" or style == "warning":
            print(text, file=self.stream if style != "warning" else sys.stderr, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._file is not None:
            if warnings.showwarning == self._warning:
                warnings.showwarning = self._showwarning
            self._file.close()
            self._file = None


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
