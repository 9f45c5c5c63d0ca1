"""What the grid and stochastic analyses share: loading and checking sweep CSVs, markdown tables, a blank
matplotlib figure (no pyplot state) and mean +- std lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..experiments.csvstore import dedupe, read_csv


def load_csvs(paths, schema: str, required: list[str], key: str, numeric: list[str], tool_hint: str) -> pd.DataFrame:
    """Read, check and combine CSV logs; every problem is a one-line DataError naming the file."""
    rows = []
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        header, part = read_csv(path)
        if not header or not part:
            raise DataError(f"{path} holds no runs (empty CSV): run the sweep first")
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: missing columns {', '.join(missing[:6])}: not a {schema} CSV "
                            f"(written by another version of the toolkit, or another tool?)")
        found = {r.get("schema") for r in part} - {schema}
        if found:
            other = sorted(map(str, found))[0]
            hint = f" ({tool_hint})" if other.startswith("alexnet_repair.") else ""
            raise DataError(f"{path}: rows of schema {other!r}, this analysis reads {schema!r}{hint}")
        rows += part
    frame = pd.DataFrame(dedupe(rows, key))
    for col in numeric:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame["success"] = frame["success"].astype(str).str.lower().isin(["true", "1"])
    return frame


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-style markdown table (no tabulate dependency)."""
    def cell(value):
        if isinstance(value, (float, np.floating)):
            return "-" if not np.isfinite(value) else f"{value:.{digits}g}"
        return str(value)
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def make_figure(ncols=1, width=6.4, height=4.2):
    """A Figure of ``ncols`` axes side by side, each ``width`` x ``height`` inches; returns (fig, axes)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height), dpi=100)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def empty_note(ax, what: str = "no successful repairs to show") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="grey")


def mean_line(ax, df, x, y, by="repair_set_type"):
    """Mean +- standard deviation of ``y`` against ``x``, one line per ``by`` (a note when there is no data)."""
    df = df[df[y].notna()]
    if df.empty:
        empty_note(ax)
        return
    for name, part in df.groupby(by):
        stats = part.groupby(x)[y].agg(["mean", "std"]).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=str(name))
    ax.legend(fontsize=8)
