"""Grid-sweep analysis: load sweep CSVs, summary tables, the runtime growth exponent and the plots.

Every figure is a matplotlib ``Figure`` (no pyplot state); :mod:`.report` writes them as PNGs and embeds them
in a self-contained HTML report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import CLASS_NAMES
from ..experiments.csvstore import json_cell
from ..experiments.schema import SCHEMA
from .common import empty_note, load_csvs, make_figure, mean_line
from .preserve import fig_preserve, with_preserve_size

REQUIRED = ["experiment_id", "schema", "repair_set_type", "requested_repair_set_size", "actual_repair_set_size",
            "target_class", "param_bound", "margin", "status", "success", "repair_runtime_seconds", "solve_time",
            "drawdown", "generalization", "per_class_change", "worst_class_change", "max_abs_change"]
NUMERIC = ["requested_repair_set_size", "actual_repair_set_size", "target_class", "param_bound", "margin", "seed",
           "repair_runtime_seconds", "build_time", "solve_time", "drawdown", "generalization", "worst_class_change",
           "max_abs_change", "saved_min_margin", "min_margin", "baseline_accuracy_test_set",
           "repaired_accuracy_test_set", "baseline_holdout_accuracy", "repaired_holdout_accuracy", "n_vars",
           "n_rows", "nnz", "solver_iterations", "wall_time", "efficacy", "fixed_count", "preserve_size",
           "preserve_rows_added", "preserve_kept", "preserve_margin"]


def load_sweeps(paths) -> pd.DataFrame:
    """The runs of grid-sweep CSVs (CSVs written before the preserve columns: preserve size 0)."""
    return with_preserve_size(load_csvs(paths, SCHEMA, REQUIRED, "experiment_id", NUMERIC,
                                        "a stochastic sweep? use analyze_stochastic.py"))


def growth_exponent(sizes, times) -> tuple[float, float, int]:
    """Least-squares fit time = a * size^k on log-log axes: (k, a, points used); NaNs when < 2 distinct sizes."""
    x, y = np.asarray(sizes, float), np.asarray(times, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if len(np.unique(x[ok])) < 2:
        return float("nan"), float("nan"), int(ok.sum())
    k, log_a = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return float(k), float(np.exp(log_a)), int(ok.sum())


def exponents(df: pd.DataFrame) -> pd.DataFrame:
    """The fitted runtime exponent per repair-set type and over all runs (runs that reached the solver)."""
    solved = df[df["solve_time"].notna()]
    out = []
    for name, part in [("all", solved), *solved.groupby("repair_set_type")]:
        k, a, n = growth_exponent(part["actual_repair_set_size"], part["repair_runtime_seconds"])
        out.append({"repair_set_type": name, "exponent": k, "coefficient": a, "points": n})
    return pd.DataFrame(out)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (type, requested size): success rate, size, time and the cost of the repairs that worked."""
    ok = df[df["success"]]
    group = ["repair_set_type", "requested_repair_set_size"]
    base = df.groupby(group).agg(runs=("experiment_id", "size"), successes=("success", "sum"),
                                 mean_actual_size=("actual_repair_set_size", "mean"),
                                 median_repair_time_s=("repair_runtime_seconds", "median"),
                                 median_solve_time_s=("solve_time", "median"))
    cost = ok.groupby(group).agg(mean_drawdown=("drawdown", "mean"), mean_generalization=("generalization", "mean"),
                                 mean_worst_class_change=("worst_class_change", "mean"),
                                 mean_max_abs_change=("max_abs_change", "mean"))
    table = base.join(cost).reset_index()
    table.insert(4, "success_rate", 100.0 * table["successes"] / table["runs"])
    return table


def methods_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """Provable repair vs fine-tuning, one line per (method, type, size); None when the sweep has one method.

    Efficacy and the costs count every run that returned a model (a partial fine-tuning or max-fixed repair too).
    """
    if "method" not in df or df["method"].nunique() < 2:
        return None
    group = ["method", "repair_set_type", "requested_repair_set_size"]
    modelled = df[df["drawdown"].notna()]
    base = df.groupby(group).agg(runs=("experiment_id", "size"), successes=("success", "sum"),
                                 median_repair_time_s=("repair_runtime_seconds", "median"))
    cost = modelled.groupby(group).agg(mean_efficacy=("efficacy", "mean"), mean_fixed=("fixed_count", "mean"),
                                       mean_drawdown=("drawdown", "mean"),
                                       mean_generalization=("generalization", "mean"),
                                       mean_max_abs_change=("max_abs_change", "mean"))
    return base.join(cost).reset_index()


def per_class_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Mean per-class accuracy change (drawdown set) of successful runs, one line per (type, size)."""
    ok = df[df["success"]].copy()
    changes = ok["per_class_change"].map(lambda v: json_cell(v, None))
    ok = ok[changes.map(lambda v: isinstance(v, list) and len(v) == len(CLASS_NAMES))]
    if ok.empty:
        return pd.DataFrame(columns=list(CLASS_NAMES))
    values = pd.DataFrame(np.array(changes[ok.index].tolist(), dtype=float), index=ok.index, columns=CLASS_NAMES)
    keys = ["repair_set_type", "requested_repair_set_size"]
    means = values.join(ok[keys]).groupby(keys).mean()          # sorted by type, then numeric size
    means.index = [f"{kind} n={int(size)}" for kind, size in means.index]
    return means


# ---- figures ---------------------------------------------------------------------------------------------------

def fig_success(df: pd.DataFrame):
    fig, (a, b) = make_figure(2)
    for name, part in df.groupby("repair_set_type"):
        rate = part.groupby("requested_repair_set_size")["success"].mean() * 100
        a.plot(rate.index, rate.values, marker="o", label=name)
    sizes = sorted(df["requested_repair_set_size"].dropna().unique())
    a.set_xscale("log")
    a.set_xticks(sizes, [f"{s:g}" for s in sizes])
    a.minorticks_off()
    a.set(xlabel="requested edit-set size", ylabel="success rate (%)", title="Success rate by size", ylim=(-5, 105))
    a.legend(fontsize=8)
    rate = df.groupby("repair_set_type")["success"].mean() * 100
    b.bar(range(len(rate)), rate.values, color="tab:blue")
    b.set_xticks(range(len(rate)), rate.index, rotation=15, fontsize=8)
    b.set(ylabel="success rate (%)", title="Success rate by type", ylim=(0, 105))
    fig.tight_layout()
    return fig


def fig_class_heatmap(df: pd.DataFrame):
    """Success rate per target class x requested size, one panel per class-homogeneous type (None if none)."""
    part = df[df["target_class"].notna()]
    types = sorted(part["repair_set_type"].unique())
    if not types:
        return None
    fig, axes = make_figure(len(types), width=5.2, height=4.6)
    for ax, name in zip(axes, types):
        grid = part[part["repair_set_type"] == name].pivot_table(
            index="target_class", columns="requested_repair_set_size", values="success", aggfunc="mean") * 100
        image = ax.imshow(grid.values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(grid.shape[1]), [str(int(c)) for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{int(c)} {CLASS_NAMES[int(c)]}" for c in grid.index])
        for (i, j), value in np.ndenumerate(grid.values):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8)
        ax.set(xlabel="requested size", title=f"{name}: success (%)")
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    return fig


def fig_runtime(df: pd.DataFrame, fits: pd.DataFrame):
    fig, (ax,) = make_figure(1)
    solved = df[df["solve_time"].notna() & (df["repair_runtime_seconds"] > 0) & (df["actual_repair_set_size"] > 0)]
    if solved.empty:
        empty_note(ax, "no run reached the solver")
        return fig
    for name, part in solved.groupby("repair_set_type"):
        ax.scatter(part["actual_repair_set_size"], part["repair_runtime_seconds"], label=name, alpha=0.8)
    fit = fits[fits["repair_set_type"] == "all"].iloc[0] if len(fits) else None
    if fit is not None and np.isfinite(fit["exponent"]):
        x = np.geomspace(max(solved["actual_repair_set_size"].min(), 1), solved["actual_repair_set_size"].max(), 50)
        ax.plot(x, fit["coefficient"] * x ** fit["exponent"], "k--",
                label=f"fit: time ~ size^{fit['exponent']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="edit-set size (actual)", ylabel="repair time (s)", title="Runtime vs size (log-log)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_cost_vs_size(df: pd.DataFrame):
    fig, (a, b) = make_figure(2)
    ok = df[df["success"]]
    mean_line(a, ok, "requested_repair_set_size", "drawdown")
    a.set(xlabel="requested edit-set size", ylabel="drawdown (points)", title="Drawdown vs size")
    mean_line(b, ok, "requested_repair_set_size", "generalization")
    b.set(xlabel="requested edit-set size", ylabel="generalization (points)", title="Generalization vs size")
    for ax in (a, b):
        ax.axhline(0, color="grey", lw=0.8)
    fig.tight_layout()
    return fig


def fig_cost_vs_bound_margin(df: pd.DataFrame):
    fig, axes = make_figure(2)
    ok = df[df["success"]].copy()
    ok["margin_label"] = ["margin " + format(v, "g") for v in ok["margin"]]
    ok["bound_label"] = ["bound " + format(v, "g") for v in ok["param_bound"]]
    for ax, x, by, label in ((axes[0], "param_bound", "margin_label", "parameter bound"),
                             (axes[1], "margin", "bound_label", "margin")):
        mean_line(ax, ok, x, "drawdown", by=by)
        ax.set(xlabel=label, ylabel="drawdown (points)", title=f"Drawdown vs {label}")
        ax.axhline(0, color="grey", lw=0.8)
    fig.tight_layout()
    return fig


def fig_methods(df: pd.DataFrame):
    """Side by side per method: drawdown against the share of edit images fixed with the margin (each run with a
    model; efficacy alone hides fine-tuning's images that are right but below the margin), and time against size."""
    if "method" not in df or df["method"].nunique() < 2:
        return None
    fig, (a, b) = make_figure(2)
    for (name, part), marker in zip(df.groupby("method"), "os^vD"):
        got = part[part["drawdown"].notna()]
        fixed = 100.0 * got["fixed_count"] / got["actual_repair_set_size"]
        a.scatter(fixed, got["drawdown"], marker=marker, alpha=0.8, label=name)
        for x, (_, run) in zip(fixed, got.iterrows()):
            a.annotate(f"n={run['actual_repair_set_size']:g}", (x, run["drawdown"]), fontsize=7,
                       xytext=(3, 3), textcoords="offset points")
        times = part.groupby("requested_repair_set_size")["repair_runtime_seconds"].median().sort_index()
        b.plot(times.index, times.values, marker=marker, label=name)
    a.set(xlabel="edit images fixed with the margin (%)", ylabel="drawdown (points)",
          title="Drawdown vs images fixed, by method")
    a.axhline(0, color="grey", lw=0.8)
    b.set_yscale("log")
    b.set(xlabel="requested edit-set size", ylabel="median repair time (s)", title="Time by method")
    for ax in (a, b):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_per_class(matrix: pd.DataFrame):
    if matrix.empty:
        return None
    fig, (ax,) = make_figure(1, width=8, height=1.2 + 0.45 * len(matrix))
    limit = max(float(np.nanmax(np.abs(matrix.values))), 1e-9)
    image = ax.imshow(matrix.values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, fontsize=8)
    ax.set_yticks(range(len(matrix)), matrix.index, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix.values):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7)
    ax.set_title("Mean per-class accuracy change on the drawdown set (points)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


def figures(df: pd.DataFrame, fits: pd.DataFrame) -> dict:
    """name -> (Figure, caption) for every plot that has data."""
    items = {
        "success_rate": (fig_success(df), "Share of runs whose repair the saved model verified, by size and type."),
        "class_size_heatmap": (fig_class_heatmap(df), "Success rate of the class-homogeneous runs per class and size."),
        "runtime_vs_size": (fig_runtime(df, fits), "Repair time (encoding + solve) against the actual edit-set size, "
                                                   "with the least-squares power-law fit."),
        "cost_vs_size": (fig_cost_vs_size(df), "Drawdown (test accuracy lost outside the edit set) and generalization "
                                               "(accuracy gained on held-out images of the same kind), successful "
                                               "runs, mean and standard deviation."),
        "cost_vs_bound_margin": (fig_cost_vs_bound_margin(df), "Drawdown against the parameter bound and the margin."),
        "per_class_change": (fig_per_class(per_class_matrix(df)), "Which classes lose accuracy."),
        "methods": (fig_methods(df), "Provable repair vs fine-tuning on the same edit sets and editable parameters: "
                                     "drawdown against the share of edit images fixed with the margin, for every "
                                     "run that returned a model (fine-tuning may fix fewer than all), and the "
                                     "median repair time."),
        "preserve": (fig_preserve(df), "Drawdown and generalization against the preserve-set size (0: no preserve "
                                       "set), per method and edit-set type, for every run that returned a model; "
                                       "mean and standard deviation."),
    }
    return {name: item for name, item in items.items() if item[0] is not None}
