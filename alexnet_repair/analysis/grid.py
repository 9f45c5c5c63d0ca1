"""Grid-sweep analysis: load sweep CSVs, summary tables and the runtime growth exponent (the plots of these are
in :mod:`.gridplots`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import CLASS_NAMES
from ..experiments.csvstore import json_cell
from ..experiments.schema import SCHEMA
from .common import load_csvs
from .preserve import with_preserve_size

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
