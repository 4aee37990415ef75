"""`ganrun report DIR`: rank the runs under a sweep dir, a run dir or outputs/ by their primary metric.

Prints the table and writes report.md, report.csv and report.png into DIR (or `out`), from the
result.json files the runs left (ganrun.sweeps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ganrun.config.schema import ReportAppConfig
from ganrun.errors import UserError
from ganrun.sweeps.render import print_report, write_report


def report(c: ReportAppConfig) -> Any:
    root = Path(c.dir).expanduser()
    if not root.is_dir():
        raise UserError(f"dir={c.dir} is not a folder; pass a sweep dir, a run dir or outputs/")
    out = Path(c.out).expanduser() if c.out else root
    result = write_report(root, out, images=c.images)
    if result is None:
        raise UserError(f"no runs under {root} (no result.json and no train run dirs); pass a sweep dir, a run dir "
                        "or outputs/")
    print_report(result)
    print(f"wrote {out / 'report.md'}, {out / 'report.csv'}" + (f", {out / 'report.png'}" if c.images else ""))
    return result


def run(cfg: DictConfig) -> Any:
    c = OmegaConf.to_object(cfg)
    assert isinstance(c, ReportAppConfig), type(c)
    return report(c)
