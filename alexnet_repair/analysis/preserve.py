"""The preserve set in a grid sweep (``--preserves``): plain APRNN, APRNN with a preserve set and fine-tuning side
by side (a table), and drawdown, generalization and repair time against the preserve-set size (a plot).

A run's preserve size is its ``requested_preserve_size`` (0 in rows written before preserve sets existed); ``all``
(every correctly classified image of the split) is held as ``ALL`` (infinity: it sorts after every count) and
drawn at the right end of a size axis, labelled ``all`` and the number of images it took (the rows'
``preserve_size``). Costs count every run that returned a model (a verified repair, or a partial one: max-fixed,
fine-tuning). Fine-tuning has no LP objective: its rows' ``objective`` is blank here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .common import distinct, make_figure, mean_line, shared_legend

SIZE = "requested_preserve_size"
ALL = np.inf
METHOD_NAMES = {"aprnn": "APRNN", "ft": "fine-tuning"}


def with_preserve_size(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a numeric preserve size (0 where the column or the cell is blank, ``ALL`` for "all"), a method
    on every row, a numeric preserve margin and an objective ("" for fine-tuning and where none is recorded)."""
    if SIZE in df:
        text = df[SIZE].astype(str).str.strip().str.lower()
        df[SIZE] = pd.to_numeric(df[SIZE], errors="coerce").mask(text == "all", ALL).fillna(0).astype(float)
    else:
        df[SIZE] = 0.0
    df["method"] = df["method"].fillna("aprnn").replace("", "aprnn") if "method" in df else "aprnn"
    df["preserve_margin"] = pd.to_numeric(df["preserve_margin"], errors="coerce") if "preserve_margin" in df \
        else np.nan
    objective = df["objective"].fillna("").astype(str) if "objective" in df else pd.Series("", index=df.index)
    df["objective"] = objective.where(df["method"] == "aprnn", "")
    return df


def size_label(size) -> str:
    """A preserve size as the tables and legends show it: '1000', 'all'."""
    return "all" if size == ALL else f"{int(size)}" if float(size).is_integer() else f"{size:g}"


def variant(method: str, preserve) -> str:
    """The table's row label: 'APRNN', 'APRNN+preserve 1000', 'APRNN+preserve all', 'fine-tuning', ..."""
    name = METHOD_NAMES.get(method, str(method))
    return f"{name}+preserve {size_label(preserve)}" if preserve else name


def _show(column: str, value) -> str:
    """One setting of a plotted series as its label shows it ("" for none)."""
    if column == "method":
        return METHOD_NAMES.get(value, str(value))
    if column == SIZE:
        return f"preserve {size_label(value)}" if value else "no preserve set"
    if column == "preserve_margin":
        return "" if pd.isna(value) else f"D={value:g}"
    return "" if pd.isna(value) else str(value)


def series(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A legend label per row naming its values of ``columns``: the first always, the others where they vary."""
    shown = [c for i, c in enumerate(columns) if i == 0 or len(distinct(df, c)) > 1]
    return pd.Series([", ".join(filter(None, (_show(c, v) for c, v in zip(shown, values))))
                      for values in df[shown].itertuples(index=False)], index=df.index, dtype=object)


def size_axis(df: pd.DataFrame) -> tuple[dict, dict]:
    """(x position, tick label) of each preserve size: counts where they are, ``all`` at the right end (at the
    count it took when that is the largest, else a few times past the largest count)."""
    sizes = sorted(df[SIZE].unique())
    top = max([s for s in sizes if s != ALL], default=0)
    positions = {s: s for s in sizes if s != ALL}
    labels = {s: size_label(s) for s in positions}
    if ALL in sizes:
        took = df.loc[df[SIZE] == ALL, "preserve_size"] if "preserve_size" in df else pd.Series(dtype=float)
        counts = sorted(pd.to_numeric(took, errors="coerce").dropna().unique())
        positions[ALL] = max(counts[-1] if counts else 0, 4 * top, 1)
        labels[ALL] = "all" + ("" if not counts else f"\n({counts[0]:,.0f})" if len(counts) == 1
                               else f"\n({counts[0]:,.0f}-{counts[-1]:,.0f})")
    return positions, labels


def size_ticks(ax, positions: dict, labels: dict) -> None:
    """A symlog x axis with a tick at each preserve size (0 included, linear below the smallest count)."""
    ticks = sorted(positions.values())
    if any(t > 0 for t in ticks):
        low = min(t for t in ticks if t > 0)
        ax.set_xscale("symlog", linthresh=low)
        ax.set_xlim(-0.25 * low if ticks[0] == 0 else low / 2, 2 * ticks[-1])
    ax.set_xticks([positions[s] for s in positions], [labels[s] for s in positions])
    ax.minorticks_off()


def preserve_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """One line per (method, preserve size, preserve margin, objective): runs, success rate, mean drawdown,
    generalization and repair time, and the share of preserve images the saved models keep; None when no run had a
    preserve set."""
    if not (df[SIZE] > 0).any():
        return None
    order = {m: i for i, m in enumerate(METHOD_NAMES)}
    keyed = df.assign(_d=df["preserve_margin"].where(df[SIZE] > 0).fillna(-1.0))
    rows = []
    for (method, size, d, objective), part in sorted(keyed.groupby(["method", SIZE, "_d", "objective"]),
                                                     key=lambda g: (order.get(g[0][0], 9), g[0])):
        modelled = part[part["drawdown"].notna()]
        kept, drawn = modelled["preserve_kept"], modelled["preserve_size"]
        ok = kept.notna() & (drawn > 0)
        rows.append({"method": variant(method, size), "preserve_margin": np.nan if d < 0 else d,
                     "objective": objective, "runs": len(part), "success_rate": 100.0 * part["success"].mean(),
                     "mean_drawdown": modelled["drawdown"].mean(),
                     "mean_generalization": modelled["generalization"].mean(),
                     "mean_repair_time_s": part["repair_runtime_seconds"].mean(),
                     "preserve_kept_pct": 100.0 * kept[ok].sum() / drawn[ok].sum() if ok.any() else np.nan})
    return pd.DataFrame(rows)


def _lines(df: pd.DataFrame) -> pd.DataFrame:
    """The rows to draw against the preserve size, with a ``line`` label (method, then edit-set type, objective
    and preserve margin where they vary). With several margins the plain runs (no margin) start the line of every
    margin of their method and objective."""
    kept = df[df[SIZE] > 0]
    if kept["preserve_margin"].nunique() > 1:
        margins = kept.groupby(["method", "objective"])["preserve_margin"].unique()
        df = pd.concat([kept, *[part.assign(preserve_margin=d) for key, part in df[df[SIZE] == 0].groupby(
            ["method", "objective"]) for d in margins.get(key, [np.nan])]], ignore_index=True)
    return df.assign(line=series(df, ["method", "repair_set_type", "objective", "preserve_margin"]))


def fig_preserve(df: pd.DataFrame):
    """Drawdown, generalization and repair time against the preserve size, one line per method (and edit-set type,
    objective and preserve margin where they vary); (figure, note) as in :mod:`.common`: no figure unless the sweep
    has two preserve sizes or more, and a note why."""
    sizes = sorted(df[SIZE].unique())
    if sizes == [0]:
        return None, "preserve table and plot skipped: no run had a preserve set (experiment_runner.py --preserves)"
    if len(sizes) < 2:
        return None, (f"preserve plot skipped: every run has preserve size {size_label(sizes[0])} (sweep "
                      f"--preserves 0 {size_label(sizes[0])} to compare)")
    positions, labels = size_axis(df)
    lines = _lines(df)
    lines["x"] = lines[SIZE].map(positions)
    fig, axes = make_figure(3)
    for ax, column, label in ((axes[0], "drawdown", "drawdown (points)"),
                              (axes[1], "generalization", "generalization (points)"),
                              (axes[2], "repair_runtime_seconds", "repair time (s)")):
        mean_line(ax, lines, "x", column, by="line")
        size_ticks(ax, positions, labels)
        if column == "repair_runtime_seconds":
            times = lines[column].dropna()
            if len(times) and times.min() > 0 and times.max() > 20 * times.min():
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))          # 1 2 5 10 20 50, not 5x10^1
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
        else:
            ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="preserve-set size", ylabel=label, title=f"{label.split(' (')[0].capitalize()} vs preserve size")
    shared_legend(fig, axes)
    return fig, ""
