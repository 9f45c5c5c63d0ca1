"""The preserve set in a grid sweep (``--preserves``): plain APRNN, APRNN with a preserve set and fine-tuning side
by side (a table), and drawdown and generalization against the preserve-set size (a plot).

A run's preserve size is its ``requested_preserve_size`` (0 in rows written before preserve sets existed). Costs
count every run that returned a model (a verified repair, or a partial one: max-fixed, fine-tuning).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .common import make_figure, mean_line, shared_legend

SIZE = "requested_preserve_size"
METHOD_NAMES = {"aprnn": "APRNN", "ft": "fine-tuning"}


def with_preserve_size(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with an integer preserve size (0 where the column or the cell is blank) and a method on every row."""
    df[SIZE] = pd.to_numeric(df[SIZE], errors="coerce").fillna(0).astype(int) if SIZE in df else 0
    df["method"] = df["method"].fillna("aprnn").replace("", "aprnn") if "method" in df else "aprnn"
    return df


def variant(method: str, preserve: int) -> str:
    """The table's row label: 'APRNN', 'APRNN+preserve 1000', 'fine-tuning', ..."""
    name = METHOD_NAMES.get(method, str(method))
    return f"{name}+preserve {preserve}" if preserve else name


def preserve_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """One line per (method, preserve size): runs, success rate, mean drawdown, generalization and repair time, and
    the share of preserve images the saved models keep; None when no run had a preserve set."""
    if not (df[SIZE] > 0).any():
        return None
    order = {m: i for i, m in enumerate(METHOD_NAMES)}
    rows = []
    for (method, size), part in sorted(df.groupby(["method", SIZE]), key=lambda g: (order.get(g[0][0], 9), g[0])):
        modelled = part[part["drawdown"].notna()]
        kept, drawn = modelled["preserve_kept"], modelled["preserve_size"]
        ok = kept.notna() & (drawn > 0)
        rows.append({"method": variant(method, size), "runs": len(part),
                     "success_rate": 100.0 * part["success"].mean(),
                     "mean_drawdown": modelled["drawdown"].mean(),
                     "mean_generalization": modelled["generalization"].mean(),
                     "mean_repair_time_s": part["repair_runtime_seconds"].mean(),
                     "preserve_kept_pct": 100.0 * kept[ok].sum() / drawn[ok].sum() if ok.any() else np.nan})
    return pd.DataFrame(rows)


def fig_preserve(df: pd.DataFrame):
    """Drawdown and generalization against the preserve size, one line per method and edit-set type; (figure, note)
    as in :mod:`.common`: no figure unless the sweep has two preserve sizes or more, and a note why."""
    sizes = sorted(df[SIZE].unique())
    if sizes == [0]:
        return None, "preserve table and plot skipped: no run had a preserve set (experiment_runner.py --preserves)"
    if len(sizes) < 2:
        return None, (f"preserve plot skipped: every run has preserve size {sizes[0]} (sweep --preserves 0 "
                      f"{sizes[0]} to compare)")
    df = df.assign(line=[f"{METHOD_NAMES.get(m, m)}, {t}" for m, t in zip(df["method"], df["repair_set_type"])])
    fig, axes = make_figure(2)
    for ax, column, label in ((axes[0], "drawdown", "drawdown (points)"),
                              (axes[1], "generalization", "generalization (points)")):
        mean_line(ax, df, SIZE, column, by="line")
        if sizes[1] > 0:
            ax.set_xscale("symlog", linthresh=sizes[1])
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
        ax.minorticks_off()
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="preserve-set size", ylabel=label, title=f"{label.split(' (')[0].capitalize()} vs preserve size")
    shared_legend(fig, axes)
    return fig, ""
