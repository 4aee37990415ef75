"""Every run's verdict on disk: `result.json` in the run dir, written atomically.

    {"status": "done" | "diverged" | "failed" | "interrupted",
     "primary": {"metric": "fid10k/domain", "goal": "minimize",
                 "best": {"value": 12.3, "step": 4000}, "last": {"value": 13.1, "step": 5000}},
     "metrics": {...the last evaluation's metrics...}, "metrics_step": 5000,
     "protocol": {"name": "10k/domain", "feature_network": "domain-…", "num_samples": 10000,
                  "reference_samples": 10000, "resolution": [1, 28, 28], "dataset": "fashion_mnist", ...},
     "step": 5000, "images_seen": 640000, "wall_seconds": 812.4, "images_per_second": 787.8,
     "segments": 2, "overrides": ["optimizer.lr=1e-4", ...], "error": null}

A `Tracker` follows one run (the training jobs tell it what they log, evaluate and save), is
carried in the run's checkpoints (so a resumed run keeps its best metric, wall time and
segment count) and writes the file once at the end, whatever the end was. Reports, sweeps
and searches read these files, never in-memory state, so a crashed or partial sweep still
reports. Standard library only.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ganrun.atomic import atomic_write_bytes

RESULT = "result.json"
STATUSES = ("done", "diverged", "failed", "interrupted")
FINISHED = ("done", "diverged")  # a sweep rerun skips these jobs; the others run (again, or on from last.pt)
PROTOCOL_ONLY = ("seed", "classifier_test_accuracy")  # recorded, but do not make numbers incomparable


IGNORED_KEYS = ("trainer.resume",)  # overrides that say where a run continues, not what it is


def override_values(overrides: list[str]) -> dict[str, Any]:
    """`["optimizer.lr=1e-4", "loss=hinge", "+x=1"]` → {"optimizer.lr": 0.0001, "loss": "hinge", "x": 1}.

    Later overrides win (a resumed run records its first overrides, then the resume's); Hydra's
    own keys and trainer.resume are left out; numbers and booleans are typed, the rest is text.
    """
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        key = key.lstrip("+~")
        if not sep or key.startswith("hydra.") or key in IGNORED_KEYS:
            continue
        values[key] = _typed(value)
    return values


def _typed(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip("'\"")


def metric_kind(name: str) -> str:
    """`fid10k/domain` → `fid`; `reverse_kl2.5k/mixture` → `reverse_kl`."""
    found = re.match(r"([a-z_]+?)\d", name)
    return found[1] if found else name.split("/")[0]


def protocol_name(name: str) -> str:
    """`fid10k/domain` → `10k/domain`: the sample count and feature network in a metric's name."""
    return name[len(metric_kind(name)):]


def protocol_key(protocol: Optional[dict]) -> str:
    """Runs whose protocol keys are equal have comparable metrics: same network, resolution, sample count."""
    if not protocol:
        return ""
    return json.dumps({k: v for k, v in sorted(protocol.items()) if k not in PROTOCOL_ONLY}, sort_keys=True)


def finite_or_none(value: Any) -> Optional[float]:
    """A metric value for ranking: nan (e.g. reverse KL with no high-quality sample) counts as missing."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class Tracker:
    """What a run has done so far; `write(status)` turns it into result.json."""

    run_dir: Path
    overrides: list[str]
    step: int = 0  # G steps reached
    nimg: int = 0  # images seen (the loop's count, across resumed segments)
    images_per_second: Optional[float] = None  # the last logged training speed
    primary: Optional[str] = None  # the metric best.pt tracks (fid*/…, reverse_kl*/mixture)
    best: Optional[dict] = None  # {"value", "step"} of the best finite primary value
    last: Optional[dict] = None  # {"value", "step"} of the last evaluation
    metrics: dict = field(default_factory=dict)  # the last evaluation's metrics
    metrics_step: Optional[int] = None
    protocol: Optional[dict] = None
    wall_before: float = 0.0  # seconds spent in earlier segments of this run
    segments: int = 1  # 1 + times resumed
    started: float = field(default_factory=time.monotonic)
    begun: bool = False  # training started (begin was called)

    # ---- told by the training jobs
    def begin(self, state: Optional[dict]) -> None:
        """Training starts; `state` is the tracker state of the checkpoint resumed from (or None)."""
        if state:
            self.load_state_dict(state)
            self.segments += 1
        self.begun = True  # wall time counts from the tracker's creation: building and data loading included

    def logged(self, step: int, values: dict[str, float]) -> None:
        self.step = step
        speed = finite_or_none(values.get("speed/images_per_s"))
        if speed is not None:
            self.images_per_second = speed

    def evaluated(self, step: int, nimg: int, primary: str, results: dict[str, float], protocol: dict) -> None:
        self.step, self.nimg = step, nimg
        self.primary, self.protocol = primary, {**protocol, "name": protocol_name(primary)}
        self.metrics = {k: float(v) for k, v in results.items() if k != "eval/seconds"}
        self.metrics_step = step
        value = finite_or_none(results.get(primary))
        self.last = {"value": results.get(primary), "step": step}
        if value is not None and (self.best is None or value < self.best["value"]):
            self.best = {"value": value, "step": step}

    def saved(self, step: int, nimg: int) -> None:
        self.step, self.nimg = step, nimg

    # ---- carried in checkpoints
    def state_dict(self) -> dict[str, Any]:
        keep = ("step", "nimg", "images_per_second", "primary", "best", "last", "metrics", "metrics_step",
                "protocol", "segments")
        return {**{k: getattr(self, k) for k in keep}, "wall_before": self.wall_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if hasattr(self, key) and key not in ("run_dir", "overrides", "started", "begun"):
                setattr(self, key, value)

    # ---- the verdict
    @property
    def wall_seconds(self) -> float:
        return self.wall_before + (time.monotonic() - self.started)

    def objective(self, status: str) -> Optional[float]:
        """What a sweeper minimizes: the best primary metric; +inf for a diverged or failed run;
        None when the run measured none (eval.every=0)."""
        if status in ("diverged", "failed"):
            return math.inf
        if self.best is not None:
            return float(self.best["value"])
        return math.inf if self.primary else None

    def result(self, status: str, error: Optional[str] = None) -> dict[str, Any]:
        assert status in STATUSES, status
        wall = self.wall_seconds
        return {
            "status": status,
            "primary": None if self.primary is None else {
                "metric": self.primary, "goal": "minimize", "best": self.best, "last": self.last},
            "objective": self.objective(status),
            "metrics": self.metrics,
            "metrics_step": self.metrics_step,
            "protocol": self.protocol,
            "step": self.step,
            "images_seen": self.nimg,
            "wall_seconds": round(wall, 3),
            "images_per_second": self.images_per_second,
            "segments": self.segments,
            "overrides": list(self.overrides),
            "error": error,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def write(self, status: str, error: Optional[str] = None) -> Path:
        text = json.dumps(self.result(status, error), indent=2, default=_plain, allow_nan=True) + "\n"
        return atomic_write_bytes(Path(self.run_dir) / RESULT, text.encode())


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return str(value)


def read_result(run_dir: Path) -> Optional[dict[str, Any]]:
    """The run's result.json, or None when it has none (running, killed) or it is unreadable."""
    try:
        data = json.loads((Path(run_dir) / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("status") in STATUSES else None
