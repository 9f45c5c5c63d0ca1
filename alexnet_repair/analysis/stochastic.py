"""Stochastic-sweep analysis: accuracy over iterations with 95% intervals across chains, time per iteration,
batch-size comparisons and a summary table.

A group is (repair-set type, preserve-set size, batch size); its chains (seeds, classes, bounds, margins, ...) are
the samples. Rows written before preserve sets existed have preserve size 0.
Iteration 0 is the base model (the ``baseline_*`` columns of each chain).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from scipy import stats

from ..experiments.schema import STOCHASTIC_SCHEMA as SCHEMA
from .common import held_value, left_out, load_csvs, make_figure, shared_legend
from .preserve import SIZE as PRESERVE
from .preserve import size_label, with_preserve_size

REQUIRED = ["experiment_id", "iteration", "row_id", "schema", "batch_size", "homogeneity", "test_accuracy",
            "full_repair_accuracy", "batch_repair_time", "success", "baseline_test_accuracy",
            "baseline_full_repair_accuracy"]
NUMERIC = ["iteration", "batch_size", "test_accuracy", "full_repair_accuracy", "batch_repair_time", "solve_time",
           "baseline_test_accuracy", "baseline_full_repair_accuracy", "full_set_size", "target_class", "seed",
           "batch_accuracy_before", "cumulative_max_abs_change"]
GROUP = ["homogeneity", PRESERVE, "batch_size"]
METRICS = {"test_accuracy": "test accuracy (%)", "full_repair_accuracy": "accuracy on the full repair set (%)"}


def load_stochastic(paths) -> pd.DataFrame:
    df = load_csvs(paths, SCHEMA, REQUIRED, "row_id", NUMERIC, "a grid sweep? use analysis.py")
    return with_preserve_size(df[df["iteration"] >= 1].copy())


def with_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus an iteration-0 row per chain holding the base model's accuracies."""
    first = df.sort_values("iteration").drop_duplicates("experiment_id").copy()
    first["iteration"] = 0
    first["test_accuracy"] = first["baseline_test_accuracy"]
    first["full_repair_accuracy"] = first["baseline_full_repair_accuracy"]
    first["batch_repair_time"] = np.nan
    return pd.concat([first, df], ignore_index=True).sort_values(["experiment_id", "iteration"])


def mean_ci(values) -> tuple[float, float, float, int]:
    """(mean, low, high, n) with a two-sided 95% Student-t interval (the mean itself when n < 2)."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean, 1
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half, len(x)


def curves(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per group and iteration: mean, 95% interval and number of chains of ``metric``."""
    rows = []
    for key, part in df.groupby([*GROUP, "iteration"]):
        mean, low, high, n = mean_ci(part[metric])
        rows.append({**dict(zip([*GROUP, "iteration"], key)), "mean": mean, "low": low, "high": high, "chains": n})
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (type, preserve size, batch size): chains, success rate, final accuracies with 95% intervals,
    time."""
    ends = dict(list(df.sort_values("iteration").groupby("experiment_id").tail(1).groupby(GROUP)))
    rows = []
    for (kind, preserve, batch), part in df.groupby(GROUP):
        end = ends[(kind, preserve, batch)]
        test, t_lo, t_hi, n = mean_ci(end["test_accuracy"])
        full, f_lo, f_hi, _ = mean_ci(end["full_repair_accuracy"])
        rows.append({"homogeneity": kind, PRESERVE: size_label(preserve), "batch_size": int(batch), "chains": n,
                     "iterations": int(part["iteration"].max()), "success_rate": 100.0 * part["success"].mean(),
                     "baseline_test_accuracy": float(part["baseline_test_accuracy"].mean()),
                     "final_test_accuracy": test, "final_test_ci95": f"[{t_lo:.2f}, {t_hi:.2f}]",
                     "baseline_full_repair_accuracy": float(part["baseline_full_repair_accuracy"].mean()),
                     "final_full_repair_accuracy": full, "final_full_ci95": f"[{f_lo:.2f}, {f_hi:.2f}]",
                     "mean_batch_repair_time_s": float(part["batch_repair_time"].mean())})
    return pd.DataFrame(rows)


def _label(kind, preserve, batch) -> str:
    return f"{kind} b={int(batch)}" + (f" preserve {size_label(preserve)}" if preserve else "")


def _bands(ax, table: pd.DataFrame) -> None:
    """Mean line and 95% band over the iterations of each group of a :func:`curves` table, legend under the figure."""
    for key, part in table.groupby(GROUP):
        line, = ax.plot(part["iteration"], part["mean"], marker="o", label=_label(*key))
        ax.fill_between(part["iteration"], part["low"], part["high"], color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def fig_accuracy(df: pd.DataFrame):
    fig, axes = make_figure(2)
    full = with_baseline(df)
    for ax, (metric, label) in zip(axes, METRICS.items()):
        _bands(ax, curves(full, metric))
        ax.set(xlabel="iteration (0 = base model)", ylabel=label, title=f"{label.split(' (')[0]} (mean, 95% CI)",
               ylim=(-3, 103))       # an interval reaching past 0 or 100% is cut there
    shared_legend(fig, axes)
    return fig, ""


def fig_time(df: pd.DataFrame):
    if df["iteration"].nunique() < 2:
        return None, "Repair time per iteration left out: every chain ran one iteration (--num-iterations 2 or more)"
    fig, axes = make_figure(1, width=6.4, height=4.2)
    _bands(axes[0], curves(df, "batch_repair_time"))
    axes[0].set(xlabel="iteration", ylabel="batch repair time (s)", title="Repair time per iteration (mean, 95% CI)")
    shared_legend(fig, axes)
    return fig, ""


def fig_batch_sizes(df: pd.DataFrame):
    """Final accuracies, success rate and time against the batch size, one line per type and preserve size."""
    held = held_value(df, "batch_size", "batch size")
    if held:
        return None, left_out("Batch-size comparison", [held], ["--batch-sizes"], "every chain")
    table = summary(df)
    fig, axes = make_figure(2, nrows=2)
    panels = [("final_test_accuracy", "final test accuracy (%)"),
              ("final_full_repair_accuracy", "final full-set accuracy (%)"),
              ("success_rate", "success rate (%)"), ("mean_batch_repair_time_s", "mean repair time (s)")]
    sizes = sorted(table["batch_size"].unique())
    for ax, (col, label) in zip(axes, panels):
        for (kind, preserve), part in table.groupby(GROUP[:2]):
            name = kind + (f" preserve {preserve}" if preserve != "0" else "")     # (the table's size labels)
            ax.plot(part["batch_size"], part[col], marker="o", label=name)
        ax.set(xlabel="batch size", ylabel=label, title=label.split(" (")[0])
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
        if label.endswith("(%)"):
            ax.set_ylim(-3, 103)
    shared_legend(fig, axes)
    return fig, ""


def figures(df: pd.DataFrame) -> dict:
    """name -> (Figure or None, caption, note), as :func:`.gridplots.figures`."""
    drawn = {
        "accuracy_over_iterations": (fig_accuracy(df), "Test accuracy and accuracy on the full repair set after "
                                                       "each iteration, mean over chains with a 95% t-interval."),
        "repair_time_per_iteration": (fig_time(df), "Wall-clock of each batch repair (encoding + solve)."),
        "batch_size_comparison": (fig_batch_sizes(df), "Where each batch size ends after the last iteration."),
    }
    return {name: (fig, caption, note) for name, ((fig, note), caption) in drawn.items()}
