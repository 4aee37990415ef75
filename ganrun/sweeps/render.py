"""A report (ganrun.sweeps.report) as a rich table, report.md, report.csv and report.png.

report.md and the console show one row per configuration (seeds grouped: mean ± std, n);
report.csv has one line per run (its row's rank, the protocol, every number), for pandas.
report.png is a contact sheet: each row's best run's last sample grid (or 2-D scatter),
captioned with its rank, overrides and metric, best first. All files are written atomically,
under a lock on the report folder, so sweep workers that finish together never interleave.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from ganrun.atomic import atomic_write, atomic_write_bytes
from ganrun.sweeps.record import metric_kind
from ganrun.sweeps.report import METRICS, Report, Row, Run, Table, build, collect, mean_std

FILES = ("report.md", "report.csv", "report.png")
TILE = 256  # px, the side of one sample image on the contact sheet
SHEET_COLUMNS = 4


def fmt(value: Optional[float], std: Optional[float] = None) -> str:
    if value is None:
        return "—"
    text = f"{value:.4g}"
    return text if std is None else f"{text} ± {std:.2g}"


def fmt_value(value: Any) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def cell(row: Row, get) -> str:
    return fmt(*mean_std(row.values(get)))


def status_of(row: Row) -> str:
    counts: dict[str, int] = {}
    for run in row.runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    if len(counts) == 1 and len(row.runs) == 1:
        return row.runs[0].status
    return ", ".join(f"{s} {n}" for s, n in counts.items())


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def header(report: Report, table: Table) -> list[str]:
    cols = ["#", *report.columns]
    if report.seeds:
        cols.append("n")
    cols.append("best")
    cols.append("at step")
    cols += [METRICS[k] for k in table.metrics]
    return cols + ["status", "steps", "wall"]


def cells(report: Report, table: Table, row: Row) -> list[str]:
    out = [str(row.rank), *(fmt_value(row.key.get(c)) for c in report.columns)]
    if report.seeds:
        out.append(str(len(row.runs)))
    out.append(cell(row, lambda r: r.best))
    out.append(fmt_value(row.runs[0].best_step))
    out += [cell(row, lambda r, k=k: r.metric(k)) for k in table.metrics]
    steps = row.values(lambda r: r.number("step"))
    wall = row.values(lambda r: r.number("wall_seconds"))
    return out + [status_of(row), f"{max(steps):.0f}" if steps else "—",
                  duration(sum(wall) / len(wall) if wall else None)]


def print_report(report: Report, console=None) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    if console is None:
        probe = Console()
        console = Console(highlight=False, width=None if probe.is_terminal else 200)
    for note in report.notes:
        console.print(f"[yellow]{note}[/yellow]")
    for table in report.tables:
        rich = RichTable(title=_ranked_by(table), title_justify="left")
        for i, name in enumerate(header(report, table)):
            rich.add_column(name, justify="left" if 0 < i <= len(report.columns) or name == "status" else "right")
        for row in table.rows:
            rich.add_row(*cells(report, table, row))
        console.print(rich)


def _ranked_by(table: Table) -> str:
    by = f"ranked by best {table.primary} (lower is better)" if table.primary else "no metric recorded"
    return f"{table.title}: {by}"


def markdown(report: Report) -> str:
    lines = [f"# Sweep report: {report.root}", "", f"{len(report.runs)} runs. Ranked by the best primary metric "
             "(lower is better); runs that differ only in seed share a row (mean ± std, n).", ""]
    lines += [f"> {note}" for note in report.notes] + ([""] if report.notes else [])
    for table in report.tables:
        head = header(report, table)
        lines += [f"## {table.title}", "", f"Ranked by best {table.primary} (lower is better)." if table.primary
                  else "No metric recorded.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(report, table, row)) + " |"
                  for row in table.rows]
        lines.append("")
    lines += ["![contact sheet](report.png)", ""]
    return "\n".join(lines)


def csv_text(report: Report) -> str:
    kinds = [k for k in METRICS if any(k in t.metrics for t in report.tables)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["protocol", "rank", "run_dir", "status", *report.columns, "seed", "primary", "best", "best_step",
                *kinds, "step", "images_seen", "wall_seconds", "images_per_second"])
    for table in report.tables:
        for row in table.rows:
            for run in row.runs:
                w.writerow([table.title, row.rank, str(run.dir), run.status,
                            *(_num(run.overrides.get(c)) for c in report.columns),
                            _num(run.overrides.get("seed")), table.primary or "", _num(run.best),
                            _num(run.best_step), *(_num(run.metric(k)) for k in kinds), _num(run.number("step")),
                            _num(run.number("images_seen")), _num(run.number("wall_seconds")),
                            _num(run.number("images_per_second"))])
    return buf.getvalue()


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def last_sample(run: Run) -> Optional[Path]:
    samples = sorted((run.dir / "samples").glob("fakes_*.png"))
    return samples[-1] if samples else None


def contact_sheet(report: Report) -> Optional[bytes]:
    """PNG bytes: one captioned tile per row (its best run's last samples), best first; None: no samples."""
    from PIL import Image, ImageDraw, ImageFont

    tiles = []
    for table in report.tables:
        for row in table.rows:
            path = next((p for p in map(last_sample, row.runs) if p is not None), None)
            if path is None:
                continue
            kind = metric_kind(table.primary) if table.primary else "best"
            caption = [f"#{row.rank}  {kind} {cell(row, lambda r: r.best)}  ({status_of(row)})".replace("—", "n/a")]
            caption += [f"{c}={fmt_value(row.key.get(c))}".replace("—", "unset") for c in report.columns]
            if len(row.runs) > 1:
                caption.append(f"n={len(row.runs)} seeds")
            if len(report.tables) > 1:
                caption.append(table.title.split(",")[0])
            tiles.append((path, caption))
    if not tiles:
        return None
    font = ImageFont.load_default(size=13)
    line = 16
    cap_h = line * max(len(c) for _, c in tiles) + 6
    cols = min(SHEET_COLUMNS, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * (TILE + 8) + 8, rows * (TILE + cap_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, caption) in enumerate(tiles):
        x = 8 + (i % cols) * (TILE + 8)
        y = 8 + (i // cols) * (TILE + cap_h + 8)
        with Image.open(path) as img:
            sheet.paste(img.convert("RGB").resize((TILE, TILE), Image.NEAREST), (x, y))
        for j, text in enumerate(caption):
            draw.text((x, y + TILE + 3 + j * line), _clip(draw, text, font), fill="black", font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _clip(draw, text: str, font) -> str:
    while len(text) > 4 and draw.textlength(text, font=font) > TILE:
        text = text[:-2]
    return text


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself (flock on its descriptor: no lock file is left behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_report(root: Path, out: Optional[Path] = None, images: bool = True) -> Optional[Report]:
    """Collect, rank and write report.md/csv/png into `out` (default: `root`); None when no run is found."""
    root, out = Path(root), Path(out or root)
    with locked(out):
        runs = collect(root)
        if not runs:
            return None
        report = build(root, runs)
        atomic_write_bytes(out / "report.md", markdown(report).encode())
        atomic_write_bytes(out / "report.csv", csv_text(report).encode())
        png = contact_sheet(report) if images else None
        if png is not None:
            atomic_write(out / "report.png", lambda f: f.write(png))
    return report
