"""What the grid and stochastic analyses share: loading and checking sweep CSVs, markdown tables, a blank
matplotlib figure (no pyplot state), mean +- std lines and the one-line note of a plot left out.

Figure functions return ``(figure, note)``: the figure is None when the plot has nothing to compare (a single x
value, a single series where a comparison is the point), and the note says in one line why it, or a panel of it,
was left out ("" when nothing was)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..experiments.csvstore import dedupe, read_csv


FEW_TICKS = 8       # a plot against a setting with this many values or fewer ticks each value


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


def make_figure(ncols=1, width=4.6, height=3.6, nrows=1):
    """A Figure of ``nrows`` x ``ncols`` axes, each about ``width`` x ``height`` inches; returns (fig, flat axes).

    Constrained layout makes room for every tick label, title, legend and colorbar inside the figure (no call to
    ``tight_layout`` needed, and none should be made).
    """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes


def fmt(value) -> str:
    """A setting's value as the report shows it: 5 not 5.0 (nor '5.0', as a CSV column read as text holds it), 0.05,
    'misclassified'."""
    try:
        return format(float(value), "g")
    except (TypeError, ValueError):
        return str(value)


def distinct(df: pd.DataFrame, column: str) -> list:
    """The sorted distinct non-blank values of ``column`` (none when the CSV lacks it)."""
    if column not in df:
        return []
    values = df[column].dropna()
    return sorted(values[values.astype(str) != ""].unique())


def held_value(df: pd.DataFrame, column: str, what: str) -> str:
    """"" when ``column`` takes two values or more, else the one value every run holds: 'margin 0.05'."""
    values = distinct(df, column)
    if len(values) >= 2:
        return ""
    return f"{what} {fmt(values[0])}" if values else f"no {what}"


def left_out(title: str, held: list[str], flags: list[str], who: str = "every run") -> str:
    """The one line saying why a plot (or some of its panels) has nothing to compare."""
    return (f"{title} left out: {who} has {' and '.join(held)} (sweep {' or '.join(flags)} over two values or more "
            f"to compare)")


def empty_note(ax, what: str = "no successful repairs to show") -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color="grey")


def mean_line(ax, df, x, y, by="repair_set_type"):
    """Mean +- standard deviation of ``y`` against ``x``, one line per ``by`` (a note when there is no data); a tick
    at each x value when there are few."""
    df = df[df[y].notna()]
    if df.empty:
        empty_note(ax)
        return
    for name, part in df.groupby(by):
        stats = part.groupby(x)[y].agg(["mean", "std"]).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=str(name))
    values = distinct(df, x)
    if len(values) <= FEW_TICKS:
        ax.set_xticks(values, [fmt(v) for v in values])
    ax.legend(fontsize=9)


def shared_legend(fig, axes) -> None:
    """One legend under the panels in place of each panel's own (for panels that draw the same series)."""
    series = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            series.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if series:
        fig.legend(series.values(), series.keys(), loc="outside lower center", ncols=min(len(series), 3),
                   fontsize=10)
