"""The sweep CSVs' schema strings and columns (grid: one row per run; stochastic: one row per chain iteration).

Every row carries its ``schema``; analysis refuses other schemas. Columns may be added within a schema version:
a CSV whose header lacks some of them still resumes and merges (csvstore rewrites it atomically with the new
header, blank cells in its old rows, on its next write). Removing or renaming a column changes the schema version.
"""

from __future__ import annotations

SCHEMA = "alexnet_repair.sweep/1"
STOCHASTIC_SCHEMA = "alexnet_repair.stochastic/1"

# requested size (the setting) and drawn size (fewer when the split runs out of correctly classified images),
# margin and split (blank without a preserve set), preserve rows the LP took in, images the saved model keeps
PRESERVE_COLUMNS = ["requested_preserve_size", "preserve_size", "preserve_margin", "preserve_split",
                    "preserve_rows_added", "preserve_kept"]

COLUMNS = [
    # identity
    "experiment_id", "timestamp", "schema", "sweep_key",
    # configuration (the earlier toolkit's column names first)
    "repair_set_type", "repair_set_focus", "requested_repair_set_size", "edit_set_sizing_strategy",
    "actual_repair_set_size", "edit_set_path", "target_class", "param_bound", "margin",
    "target_class_name", "layer", "method", "seed", "solver_requested", "objective", "dataset", "edit_split",
    "holdout_fraction", "candidates",
    # the earlier toolkit's results (accuracies in percent)
    "baseline_model_path", "baseline_accuracy_test_set", "baseline_accuracy_edit_set",
    "repair_runtime_seconds", "gurobi_barrier_iterations", "repair_successful",
    "repaired_model_path", "repaired_accuracy_test_set", "repaired_accuracy_edit_set",
    "repaired_accuracy_drawdown_set", "error_message",
    # solver and LP
    "status", "success", "solver", "solver_version", "formulation", "n_vars", "n_rows", "nnz", "n_solves",
    "build_time", "solve_time", "solver_iterations", "iterations", "objective_value",
    # verification and what the repair cost
    "min_margin", "saved_min_margin", "max_abs_change", "efficacy",
    "drawdown_set_size", "baseline_accuracy_drawdown_set", "drawdown",
    "holdout_size", "baseline_holdout_accuracy", "repaired_holdout_accuracy", "generalization",
    "per_class_change", "worst_class", "worst_class_name", "worst_class_change",
    "fixed_count", "unfixable_indices",
    # the preserve set (added to schema 1: blank in older rows)
    *PRESERVE_COLUMNS,
    # provenance
    "threads", "wall_time", "weights_sha256", "git_commit", "toolkit_version", "record_path",
]

STOCHASTIC_COLUMNS = [
    "experiment_id", "iteration", "row_id", "timestamp", "schema", "sweep_key",
    "batch_size", "homogeneity", "target_class", "target_class_name", "param_bound", "margin", "layer", "method",
    "seed", "solver_requested", "objective", "full_set_size", "candidates",   # (objective: added to schema 1)
    # the earlier toolkit's columns (accuracies in percent)
    "test_accuracy", "full_repair_accuracy", "batch_repair_time", "error_message",
    "status", "success", "successes_so_far", "batch_indices", "batch_accuracy_before",
    "baseline_test_accuracy", "baseline_full_repair_accuracy",
    "build_time", "solve_time", "solver", "solver_version", "solver_iterations", "n_vars", "n_rows", "nnz",
    "min_margin", "max_abs_change", "cumulative_max_abs_change", "fixed_count", "unfixable_indices",
    *PRESERVE_COLUMNS,
    "threads", "weights_sha256", "git_commit", "toolkit_version", "model_path",
]


def row_key(header: list[str] | None) -> str:
    """The column that names a row of a sweep CSV with this header: ``row_id`` (stochastic) or ``experiment_id``."""
    return "row_id" if header and "row_id" in header else "experiment_id"
