"""The result-row fields that grid rows (one per run) and stochastic rows (one per chain iteration) share.

Each function returns a dict of CSV fields; a row keeps only the keys its columns (:mod:`.schema`) name.
"""

from __future__ import annotations

import time

from .. import __version__
from ..data import CLASS_NAMES


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def settings_fields(spec) -> dict:
    """The repair settings of a run or chain (a :class:`~.settings.RepairSettings`)."""
    return {"target_class": spec.target_class, "param_bound": spec.param_bound, "margin": spec.margin,
            "target_class_name": None if spec.target_class is None else CLASS_NAMES[spec.target_class],
            "layer": spec.layer, "method": spec.method, "seed": spec.seed, "solver_requested": spec.solver,
            "objective": spec.objective if spec.method == "aprnn" else None,    # fine-tuning has no LP objective
            "requested_preserve_size": spec.preserve,
            "preserve_margin": spec.preserve_margin if spec.preserve else None,
            "preserve_split": spec.preserve_split if spec.preserve else None}


def provenance_fields(ctx, threads: int | None) -> dict:
    """Threads, checkpoint hash and toolkit version of a row made under the sweep context ``ctx``."""
    return {"threads": threads, "weights_sha256": ctx.weights_sha256, "git_commit": ctx.versions.get("git_commit"),
            "toolkit_version": __version__}


def error_fields(message: str) -> dict:
    return {"status": "error", "success": False, "error_message": message}


def result_fields(result) -> dict:
    """What a :class:`~alexnet_repair.repair.RepairResult` reports: status, solver and LP sizes, times, verification."""
    rec = result.record()
    iterations = rec.get("iterations") or {}
    out = {"status": result.status, "success": result.success, "repair_successful": result.success,
           "error_message": "" if result.success else result.message, "solver": result.solver,
           "solver_version": result.solver_version, "formulation": result.formulation, "n_vars": result.n_vars,
           "n_rows": result.n_rows, "nnz": result.nnz, "n_solves": result.n_solves,
           "build_time": result.build_time, "solve_time": result.solve_time,
           "repair_runtime_seconds": result.total_time, "iterations": iterations,
           "solver_iterations": sum(int(iterations.get(k, 0)) for k in ("simplex", "ipm", "pdlp")),
           "gurobi_barrier_iterations": iterations.get("ipm") if result.solver == "gurobi" else None,
           "objective_value": result.objective, "fixed_count": rec.get("fixed_count"),
           "unfixable_indices": rec.get("unfixable_indices"), "preserve_size": result.preserve_size,
           "preserve_rows_added": result.preserve_rows_added, "preserve_kept": result.preserve_kept}
    if result.verification is not None:
        out.update(min_margin=result.verification.min_margin, max_abs_change=result.verification.max_abs_change,
                   efficacy=result.verification.efficacy)
    return out
