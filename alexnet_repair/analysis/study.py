"""Which configuration costs least: drawdown and repair time against the preserve margin (``--preserve-margins``)
and the LP objective (``--objectives``), with the preserve size as the series (:mod:`.preserve` has them against
the preserve size).

Each ``fig_*`` returns ``(figure, note)`` as in :mod:`.common`. Drawdown counts every run that returned a model,
repair time every run that has one. Fine-tuning has no objective: the objective plot shows the APRNN runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..repair import OBJECTIVES
from .common import distinct, empty_note, held_value, left_out, make_figure, mean_line, shared_legend
from .preserve import ALL, SIZE, series, size_axis

PANELS = (("drawdown", "drawdown (points)"), ("repair_runtime_seconds", "repair time (s)"))


def _finish(ax, column: str, label: str, xlabel: str, title: str) -> None:
    if column == "drawdown":
        ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel=xlabel, ylabel=label, title=title)


def _with_count(labels: pd.Series, df: pd.DataFrame) -> pd.Series:
    """Series labels with "preserve all" followed by the number of images it took, when the CSV has it."""
    every = "preserve " + size_axis(df)[1].get(ALL, "all").replace("\n", " ")
    return labels.str.replace("preserve all", every, regex=False)


def fig_preserve_margin(df: pd.DataFrame):
    """Drawdown and repair time against the preserve margin D of the runs with a preserve set, one line per preserve
    size (and method, edit-set type and objective where they vary); no figure without two margins or more."""
    part = df[df[SIZE] > 0]
    if part.empty:      # (the preserve plot's note says so)
        return None, ""
    held = held_value(part, "preserve_margin", "preserve margin")
    if held:
        return None, left_out("Drawdown and time vs preserve margin", [held], ["--preserve-margins"],
                              "every run with a preserve set")
    part = part.assign(line=_with_count(series(part, [SIZE, "method", "repair_set_type", "objective"]), part))
    part = part.sort_values(SIZE)
    fig, axes = make_figure(len(PANELS))
    for ax, (column, label) in zip(axes, PANELS):
        mean_line(ax, part, "preserve_margin", column, by="line")
        _finish(ax, column, label, "preserve margin D", f"{label.split(' (')[0].capitalize()} vs preserve margin")
    shared_legend(fig, axes)
    return fig, ""


def _objectives(df: pd.DataFrame) -> list[str]:
    found = distinct(df, "objective")
    return [o for o in OBJECTIVES if o in found] + [o for o in found if o not in OBJECTIVES]


def _bars(ax, df: pd.DataFrame, column: str, objectives: list[str], bars: list[str]) -> None:
    """Grouped bars: a group per objective, a bar per series (mean, with the standard deviation)."""
    got = df[df[column].notna()]
    if got.empty:
        empty_note(ax, "no run to show")
        return
    width = 0.8 / len(bars)
    for i, name in enumerate(bars):
        stats = got[got["bar"] == name].groupby("objective")[column].agg(["mean", "std"]).reindex(objectives)
        where = np.arange(len(objectives)) + (i - (len(bars) - 1) / 2) * width
        shown = stats["mean"].notna().to_numpy()
        ax.bar(where[shown], stats["mean"][shown], width, yerr=stats["std"].fillna(0)[shown], capsize=3, label=name)
    ax.set_xticks(range(len(objectives)), objectives)


def fig_objectives(df: pd.DataFrame):
    """Drawdown and repair time per LP objective (APRNN runs), a bar per preserve size (and preserve margin where it
    varies); no figure without two objectives or more."""
    lp = df[(df["method"] == "aprnn") & (df["objective"] != "")]
    held = held_value(lp, "objective", "objective")
    if held:
        return None, left_out("Drawdown and time by objective", [held], ["--objectives"], "every APRNN run")
    lp = lp.assign(bar=_with_count(series(lp, [SIZE, "preserve_margin"]), lp))
    bars = list(dict.fromkeys(lp.sort_values([SIZE, "preserve_margin"])["bar"]))
    objectives = _objectives(lp)
    fig, axes = make_figure(len(PANELS), width=max(4.6, 1.2 + 0.5 * len(objectives) * len(bars)))
    for ax, (column, label) in zip(axes, PANELS):
        _bars(ax, lp, column, objectives, bars)
        _finish(ax, column, label, "LP objective (--objectives)", f"{label.split(' (')[0].capitalize()} by objective")
    shared_legend(fig, axes)
    return fig, ""
