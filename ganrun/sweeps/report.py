"""A sweep's report, built from the files its runs left: which configuration won, and by how much.

`collect(dir)` finds the runs under a sweep dir, a run dir or outputs/: every folder with a
result.json, and every train run dir without one (still running, or killed) as `unfinished`.
`build(runs)` ranks them:

- **Only like with like.** Each run's result.json stamps the protocol of its metrics (feature
  network id, resolution, sample counts, dataset). Runs scored under different protocols go
  into separate tables, each ranked on its own, and the report says so; a number is never
  ranked against one measured another way. Runs without any metric (failed or diverged before
  their first evaluation, eval off) join the table when there is one, else a table of their own.
- **One row per configuration.** Columns are the overrides whose values differ between runs;
  runs that differ only in `seed` form one row with mean ± std and n.
- Rows are ranked by the best primary metric (lower is better: FID, or reverse KL for 2-D data),
  rows without one last.

Rendering (rich table, report.md, report.csv, contact sheet) is in `ganrun.sweeps.render`.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ganrun.sweeps.record import (RESULT, finite_or_none, metric_kind, override_values, protocol_key,
                                  read_result)

SEED = "seed"
UNFINISHED = "unfinished"  # no result.json: running, or killed before it could write one
# final-metric columns, in this order, when present: images (FID/KID/precision/recall), 2-D mixtures
METRICS = {"fid": "FID", "kid": "KID", "precision": "precision", "recall": "recall",
           "modes_covered": "modes", "high_quality_fraction": "HQ", "reverse_kl": "reverse KL",
           "mode_spread": "spread"}


@dataclass
class Run:
    dir: Path
    status: str
    overrides: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def protocol(self) -> Optional[dict]:
        return self.result.get("protocol")

    @property
    def primary(self) -> Optional[str]:
        return (self.result.get("primary") or {}).get("metric")

    @property
    def best(self) -> Optional[float]:
        best = (self.result.get("primary") or {}).get("best")
        return None if not best else finite_or_none(best.get("value"))

    @property
    def best_step(self) -> Optional[int]:
        best = (self.result.get("primary") or {}).get("best")
        return None if not best else best.get("step")

    def metric(self, kind: str) -> Optional[float]:
        for name, value in (self.result.get("metrics") or {}).items():
            if metric_kind(name) == kind:
                return finite_or_none(value)
        return None

    def number(self, key: str) -> Optional[float]:
        return finite_or_none(self.result.get(key))


def _is_train_run(path: Path) -> bool:
    """A train run dir: Hydra's record of the job, and training output (checkpoints or events)."""
    if not (path / ".hydra" / "overrides.yaml").is_file():
        return False
    return (path / "checkpoints").is_dir() or any(p.name.startswith("events.out.tfevents") for p in path.iterdir())


def collect(root: Path) -> list[Run]:
    """Every run under `root` (itself included), in path order."""
    runs = []
    for here, dirs, files in os.walk(root):
        path = Path(here)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if RESULT in files or _is_train_run(path):
            runs.append(_read_run(path))
            dirs[:] = []  # a run's own folders (checkpoints, samples) hold no runs
    return runs


def _read_run(path: Path) -> Run:
    result = read_result(path)
    if result is not None:
        return Run(path, result["status"], override_values(result.get("overrides") or []), result)
    import yaml

    try:
        overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        overrides = []
    return Run(path, UNFINISHED, override_values([str(o) for o in overrides]))


@dataclass
class Row:
    rank: int
    runs: list[Run]  # best first
    key: dict[str, Any]  # the row's values of the differing overrides (seed aside)

    def values(self, get) -> list[float]:
        return [v for v in (get(r) for r in self.runs) if v is not None]

    @property
    def score(self) -> Optional[float]:
        best = self.values(lambda r: r.best)
        return statistics.fmean(best) if best else None


@dataclass
class Table:
    title: str  # the protocol in words
    primary: Optional[str]  # the ranked metric's name
    metrics: list[str]  # final-metric kinds shown
    rows: list[Row]


@dataclass
class Report:
    root: Path
    columns: list[str]  # overrides that differ between runs (seed aside)
    seeds: bool  # some rows group several seeds
    tables: list[Table]
    notes: list[str]
    runs: list[Run]


def differing(runs: list[Run]) -> list[str]:
    keys = sorted({k for r in runs for k in r.overrides})
    return [k for k in keys if len({json.dumps(r.overrides.get(k), sort_keys=True) for r in runs}) > 1]


def protocol_title(protocol: Optional[dict]) -> str:
    if not protocol:
        return "not scored (no evaluation recorded)"
    parts = [protocol.get("name", "?"), f"dataset {protocol.get('dataset', '?')}"]
    if protocol.get("feature_network"):
        parts.append(f"feature network {protocol['feature_network']}")
    if protocol.get("resolution"):
        parts.append("resolution " + "×".join(str(d) for d in protocol["resolution"]))
    parts.append(f"{protocol.get('num_samples', '?')} samples vs {protocol.get('reference_samples', '?')} reference")
    return ", ".join(parts)


def build(root: Path, runs: list[Run]) -> Report:
    columns = differing(runs)
    seeds = SEED in columns
    columns = [c for c in columns if c != SEED]
    by_protocol: dict[str, list[Run]] = {}
    for run in runs:
        by_protocol.setdefault(protocol_key(run.protocol), []).append(run)
    notes = []
    unscored = by_protocol.pop("", [])
    if len(by_protocol) == 1 and unscored:
        next(iter(by_protocol.values())).extend(unscored)
    elif unscored:
        by_protocol[""] = unscored
    scored = [k for k in by_protocol if k]
    if len(scored) > 1:
        notes.append(f"These runs were scored under {len(scored)} different protocols (feature network, resolution "
                     "or sample count); each protocol has its own table and numbers are never ranked across tables. "
                     "To rank them together, evaluate every run under one protocol.")
    tables = [_table(group, columns) for key, group in sorted(by_protocol.items(), key=lambda kv: kv[0] == "")]
    return Report(root, columns, seeds, tables, notes, runs)


def _standing(run: Run) -> int:
    """0 done, 1 interrupted or running (may still finish), 2 diverged or failed."""
    return 0 if run.status == "done" else 2 if run.status in ("diverged", "failed") else 1


def _table(runs: list[Run], columns: list[str]) -> Table:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps([run.overrides.get(c) for c in columns], sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    rows = []
    for members in groups.values():
        members.sort(key=lambda r: (r.best is None, r.best if r.best is not None else 0.0, _standing(r), str(r.dir)))
        rows.append(Row(0, members, {c: members[0].overrides.get(c) for c in columns}))
    # by score; rows without one (no finite metric yet) by how far their runs got, finished ones first
    rows.sort(key=lambda row: (row.score is None, row.score if row.score is not None else 0.0,
                               min(_standing(r) for r in row.runs), str(row.runs[0].dir)))
    for i, row in enumerate(rows, 1):
        row.rank = i
    primary = next((r.primary for r in runs if r.primary), None)
    kinds = [k for k in METRICS if any(r.metric(k) is not None for r in runs)]
    protocol = next((r.protocol for r in runs if r.protocol), None)
    return Table(protocol_title(protocol), primary, kinds, rows)


def mean_std(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)
