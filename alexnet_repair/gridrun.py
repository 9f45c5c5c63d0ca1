"""Running grid-sweep configurations: draw the edit set, repair, verify on the saved model, evaluate, and write
one CSV row per run (the parent process is the only writer; workers return rows)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import __version__
from .csvlog import append_row, replace_rows
from .data import CLASS_NAMES
from .editsets import SWEEP_TYPES, build_editset
from .errors import AlexRepairError
from .evaluate import compare_models, logits_of, margins_of, predict
from .experiments import COLUMNS, SCHEMA, RunSpec, SweepContext, artifact_dir, method_args, repair_config
from .fileio import write_json
from .model import load_checkpoint, save_checkpoint
from .repair import run_method
from .workers import run_pool, threads_per_worker

log = logging.getLogger(__name__)


def write_row(path, row: dict, replacing: bool) -> None:
    if replacing:
        replace_rows(path, "experiment_id", [row], COLUMNS)
    else:
        append_row(path, row, COLUMNS)


def run_one(spec: RunSpec, ctx: SweepContext, base, threads: int | None = None) -> dict:
    """Draw the edit set, repair, verify on the saved model, evaluate; always returns a CSV row."""

    setup, start = ctx.setup, time.perf_counter()
    kind, focus = SWEEP_TYPES[spec.repair_set_type]
    row = {"experiment_id": spec.experiment_id, "schema": SCHEMA, "sweep_key": ctx.sweep_key,
           "repair_set_type": spec.repair_set_type, "repair_set_focus": focus or "",
           "requested_repair_set_size": spec.size, "edit_set_sizing_strategy": setup.sizing,
           "target_class": spec.target_class, "param_bound": spec.param_bound, "margin": spec.margin,
           "target_class_name": None if spec.target_class is None else CLASS_NAMES[spec.target_class],
           "layer": spec.layer, "method": spec.method, "seed": spec.seed, "solver_requested": spec.solver,
           "objective": setup.objective, "dataset": ctx.test.dataset, "edit_split": setup.edit_split,
           "holdout_fraction": setup.holdout_fraction, "baseline_model_path": setup.weights,
           "baseline_accuracy_test_set": ctx.cache.base_predictions().accuracy(), "threads": threads,
           "weights_sha256": ctx.weights_sha256, "git_commit": ctx.versions.get("git_commit"),
           "toolkit_version": __version__, "status": "error", "success": False, "repair_successful": False}
    record = {"spec": asdict(spec), "setup": asdict(setup), "versions": ctx.versions}
    try:
        editset = build_editset(base, ctx.edit, kind, target_class=spec.target_class, focus=focus or "incorrect",
                                max_size=spec.size, sizing=setup.sizing, holdout_fraction=setup.holdout_fraction,
                                seed=spec.seed, device=setup.device, checkpoint_sha256=ctx.weights_sha256,
                                checkpoint_path=setup.weights, predictions=ctx.base_edit, progress=False)
        row.update(actual_repair_set_size=len(editset), candidates=editset.meta["candidates"],
                   baseline_accuracy_edit_set=100.0 * float((editset.predictions == editset.labels).float().mean()))
        record["editset"] = {k: v for k, v in editset.meta.items() if k != "probabilities"}
        config = repair_config(setup, spec, threads)
        result = run_method(base, editset, config, method_args(setup, spec.seed), setup.device)
        row.update(_result_columns(result))
        record["result"] = result.record()
        if result.model is not None:      # success, or a verified partial repair (max-fixed, fine-tuning)
            row.update(_evaluate(ctx, base, result.model, editset, spec, record))
    except AlexRepairError as err:
        row["error_message"] = str(err)
    except Exception as err:  # a bug or resource failure in one run must not end the sweep: record why
        log.error("run %s failed", spec.experiment_id, exc_info=True)
        row["error_message"] = f"{type(err).__name__}: {err}"
    row["wall_time"] = time.perf_counter() - start
    row["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if setup.record_dir:
        path = Path(setup.record_dir) / f"{spec.experiment_id}.json"
        row["record_path"] = str(path)
        write_json(path, {**record, "row": row})
    return row


def _result_columns(result) -> dict:
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
           "unfixable_indices": rec.get("unfixable_indices")}
    if result.verification is not None:
        out.update(min_margin=result.verification.min_margin, max_abs_change=result.verification.max_abs_change,
                   efficacy=result.verification.efficacy)
    return out


def _evaluate(ctx: SweepContext, base, repaired, editset, spec: RunSpec, record: dict) -> dict:
    """Metrics of a successful repair; the edit-set margin is re-measured on the model as saved."""
    setup, out = ctx.setup, {}
    if setup.keep_models:
        path = artifact_dir(spec.experiment_id, setup.output_file) / "repaired.pth"
        save_checkpoint(repaired, path)
        repaired = load_checkpoint(path)
        out["repaired_model_path"] = str(path)
    logits = logits_of(repaired, editset.images, setup.device)
    margins = margins_of(logits, editset.labels)
    out["saved_min_margin"] = float(margins.min())
    out["repaired_accuracy_edit_set"] = 100.0 * float((logits.argmax(1) == editset.labels).float().mean())
    new_preds = ctx.cache.predictions(repaired, base, setup.device)
    if editset.split == ctx.test.split:
        metrics = compare_models(ctx.cache.base_predictions(), new_preds, editset.indices, editset.holdout_indices)
    else:
        holdout = tuple(predict(m, ctx.edit, setup.device, index=editset.holdout_indices, progress=False)
                        for m in (base, repaired)) if len(editset.holdout_indices) else None
        metrics = compare_models(ctx.cache.base_predictions(), new_preds, (), editset.holdout_indices, holdout)
    worst = metrics.get("worst_class")
    out.update({k: metrics[k] for k in ("drawdown_set_size", "drawdown", "holdout_size", "baseline_holdout_accuracy",
                                        "repaired_holdout_accuracy", "generalization", "per_class_change",
                                        "worst_class", "worst_class_change")})
    out.update(repaired_accuracy_test_set=metrics["repaired_test_accuracy"],
               baseline_accuracy_drawdown_set=metrics["baseline_drawdown_accuracy"],
               repaired_accuracy_drawdown_set=metrics["repaired_drawdown_accuracy"],
               worst_class_name=None if worst is None else CLASS_NAMES[worst])
    record["metrics"] = metrics
    record["edit_predictions_after"] = logits.argmax(1).tolist()
    return out


def _worker_state(ctx: SweepContext, threads: int):
    return ctx, load_checkpoint(ctx.setup.weights), threads


def _work(state, spec: RunSpec) -> dict:
    ctx, base, threads = state
    return run_one(spec, ctx, base, threads)


def execute(todo: list[RunSpec], ctx: SweepContext, output, done: dict, jobs: int = 1, threads: int | None = None,
            progress: bool = True) -> list[dict]:
    """Run ``todo`` (in ``jobs`` processes) and write each row to ``output`` as it arrives; returns the rows."""
    from tqdm import tqdm

    threads = threads_per_worker(jobs, threads)
    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, dynamic_ncols=True)
    rows = []

    def record(row):
        write_row(output, row, replacing=row["experiment_id"] in done)
        rows.append(row)
        bar.set_postfix_str(f"{row['experiment_id']}: {row['status']}", refresh=False)
        bar.update(1)

    try:
        if jobs <= 1:
            torch.set_num_threads(threads)
            state = _worker_state(ctx, threads)
            for spec in todo:
                record(_work(state, spec))
        else:
            run_pool(_work, todo, _worker_state, (ctx, threads), jobs, threads, record)
    finally:
        bar.close()
    return rows
