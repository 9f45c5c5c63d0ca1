"""Grid sweeps: repair-set type x size x class x bound x margin x layer x method x objective x solver x preserve
size x preserve margin x seed, one CSV row per run.

A run's key is its ``experiment_id`` (e.g. ``misclassified_n50_c-_b5_m2_l6_s0_aprnn_auto``). Each run draws its
edit set, repairs, verifies on the saved model and evaluates; each run is claimed first (:mod:`.claims`) and its
row appended as one complete fsynced line while the claim is held, so a killed sweep loses at most its in-flight
runs, and several runners on one CSV (processes, shards, array tasks) split its runs with no run done twice.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..data import CLASS_NAMES
from ..editsets import SWEEP_TYPES, build_editset
from ..errors import AlexRepairError
from ..evaluate import compare_models, logits_of, margins_of, predict
from ..fileio import write_json
from ..model import load_checkpoint, save_checkpoint
from ..paths import path_for, safe_name
from ..repair import run_method
from .claims import Claims
from .csvstore import store_row
from .plan import completed_rows
from .pool import run_all, threads_per_worker
from .progress import Progress
from .rows import provenance_fields, result_fields, settings_fields, timestamp
from .schema import COLUMNS, SCHEMA
from .settings import (DEFAULT_BOUNDS, DEFAULT_CLASSES, DEFAULT_LAYERS, DEFAULT_MARGINS, DEFAULT_METHODS,
                       DEFAULT_SEEDS, DEFAULT_SIZES, DEFAULT_TYPES, RepairSettings, check_settings, settings_grid)
from .setup import SweepContext, data_source, repair_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec(RepairSettings):
    """One grid point."""

    size: int = 0

    @property
    def experiment_id(self) -> str:
        return safe_name(f"{self.repair_set_type}_n{self.size}_{self.settings_tag}")


def build_grid(types=DEFAULT_TYPES, sizes=DEFAULT_SIZES, classes=DEFAULT_CLASSES, bounds=DEFAULT_BOUNDS,
               margins=DEFAULT_MARGINS, layers=DEFAULT_LAYERS, methods=DEFAULT_METHODS, seeds=DEFAULT_SEEDS,
               solver: str = "auto", **more) -> list[RunSpec]:
    """The grid in a fixed order (small sizes first); ``misclassified`` ignores ``classes``.

    ``more``: ``preserves``, ``preserve_margin``, ``objectives`` (grid dimensions) and ``preserve_split`` (see
    settings_grid).
    """
    check_settings(types, sizes, classes, bounds, margins, methods, **more)
    specs = [RunSpec(size=size, **settings) for size, kind in itertools.product(sorted(set(map(int, sizes))), types)
             for settings in settings_grid(kind, classes, bounds, margins, layers, methods, seeds, solver, **more)]
    return list(dict.fromkeys(specs))


def run_one(spec: RunSpec, ctx: SweepContext, base, threads: int | None = None) -> dict:
    """Draw the edit set, repair, verify on the saved model, evaluate; always returns a CSV row."""
    setup, start = ctx.setup, time.perf_counter()
    kind, focus = SWEEP_TYPES[spec.repair_set_type]
    row = {"experiment_id": spec.experiment_id, "schema": SCHEMA, "sweep_key": ctx.sweep_key,
           "repair_set_type": spec.repair_set_type, "repair_set_focus": focus or "",
           "requested_repair_set_size": spec.size, "edit_set_sizing_strategy": setup.sizing, **settings_fields(spec),
           "dataset": ctx.test.dataset, "edit_split": setup.edit_split,
           "holdout_fraction": setup.holdout_fraction, "baseline_model_path": setup.weights,
           "baseline_accuracy_test_set": ctx.cache.base_predictions().accuracy(), **provenance_fields(ctx, threads),
           "status": "error", "success": False, "repair_successful": False}
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
        result = run_method(base, editset, config, data_source(setup), seed=spec.seed, device=setup.device)
        row.update(result_fields(result))
        record["result"] = result.record()
        if result.model is not None:      # success, or a verified partial repair (max-fixed, fine-tuning)
            row.update(_evaluate(ctx, base, result.model, editset, spec, record, result.preserve_indices))
    except AlexRepairError as err:
        row["error_message"] = str(err)
    except Exception as err:  # a bug or resource failure in one run must not end the sweep: record why
        log.error("run %s failed", spec.experiment_id, exc_info=True)
        row["error_message"] = f"{type(err).__name__}: {err}"
    row["wall_time"] = time.perf_counter() - start
    row["timestamp"] = timestamp()
    if setup.record_dir:
        path = Path(setup.record_dir) / f"{spec.experiment_id}.json"
        row["record_path"] = str(path)
        write_json(path, {**record, "row": row})
    return row


def _evaluate(ctx: SweepContext, base, repaired, editset, spec: RunSpec, record: dict, preserve_indices=None) -> dict:
    """Metrics of a successful repair; the edit-set margin is re-measured on the model as saved. The drawdown leaves
    out a ``--preserve-split test`` repair's preserve images (held correct by construction)."""
    setup, out = ctx.setup, {}
    preserve_test = (preserve_indices or []) if spec.preserve_split == "test" else []
    if setup.keep_models:
        path = path_for("run_models", experiment_id=spec.experiment_id, sweep_csv=setup.output_file) / "repaired.pth"
        save_checkpoint(repaired, path)
        repaired = load_checkpoint(path)
        out["repaired_model_path"] = str(path)
    logits = logits_of(repaired, editset.images, setup.device)
    margins = margins_of(logits, editset.labels)
    out["saved_min_margin"] = float(margins.min())
    out["repaired_accuracy_edit_set"] = 100.0 * float((logits.argmax(1) == editset.labels).float().mean())
    new_preds = ctx.cache.predictions(repaired, base, setup.device)
    if editset.split == ctx.test.split:
        metrics = compare_models(ctx.cache.base_predictions(), new_preds, editset.indices, editset.holdout_indices,
                                 preserve_indices=preserve_test)
    else:
        holdout = tuple(predict(m, ctx.edit, setup.device, index=editset.holdout_indices, progress=False)
                        for m in (base, repaired)) if len(editset.holdout_indices) else None
        metrics = compare_models(ctx.cache.base_predictions(), new_preds, (), editset.holdout_indices, holdout,
                                 preserve_test)
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


def run_claimed(spec: RunSpec, ctx: SweepContext, base, threads: int | None, output, seen: dict) -> dict:
    """Claim the run, re-read the CSV, run it and write its row while the claim is held; returns the row, or
    ``{"experiment_id": ..., "skipped": "claimed" | "done"}`` when another runner holds the claim or has finished
    the run meanwhile. ``seen``: the failed rows to retry as the plan saw them (another runner may retry one
    first: a row that differs is taken as done)."""
    key = spec.experiment_id
    with Claims(output).hold(key) as got:
        if not got:
            return {"experiment_id": key, "skipped": "claimed"}
        current = completed_rows(output).get(key)
        if current is not None and not _same(current, seen.get(key)):
            return {"experiment_id": key, "skipped": "done"}
        row = run_one(spec, ctx, base, threads)
        store_row(output, row, COLUMNS, replace_key="experiment_id" if current is not None else None)
        return row


def _same(row: dict, seen: dict | None) -> bool:
    """Whether ``row`` is still the row ``seen`` (columns added to the file since are blank in it)."""
    return seen is not None and all(row.get(k) == v for k, v in seen.items())


def _worker_state(ctx: SweepContext, threads: int, output: str, seen: dict):
    return ctx, load_checkpoint(ctx.setup.weights), threads, output, seen


def _work(state, spec: RunSpec) -> dict:
    ctx, base, threads, output, seen = state
    return run_claimed(spec, ctx, base, threads, output, seen)


def execute(todo: list[RunSpec], ctx: SweepContext, output, done: dict, jobs: int = 1, threads: int | None = None,
            progress: bool = True) -> list[dict]:
    """Run ``todo`` (in ``jobs`` processes), each under its claim, its row written as it finishes; returns the rows
    this process wrote. Runs another runner holds are left to it; a pass at the end takes over those whose claim
    has been dropped without a row (the runner died)."""
    threads = threads_per_worker(jobs, threads)
    seen = {k: row for k, row in done.items() if k in {s.experiment_id for s in todo}}
    bar = Progress(len(todo), "sweep", "run", enabled=progress)
    rows, claimed = [], []

    def record(row):
        if row.get("skipped"):
            claimed.extend([row["experiment_id"]] if row["skipped"] == "claimed" else [])
            bar.skip(1, f"{row['experiment_id']}: {'another runner' if row['skipped'] == 'claimed' else 'done'}")
            return
        rows.append(row)
        bar.update(1, failed=not row["success"], note=f"{row['experiment_id']}: {row['status']}")

    claims, pending = Claims(output), todo
    try:
        for _ in range(3):      # the pass over todo, then takeovers of claims dropped without a row
            run_all(_work, pending, _worker_state, (ctx, threads, str(output), seen), jobs, threads, record)
            free = {k for k in claimed if not claims.held(k)} - set(completed_rows(output))
            pending, claimed = [s for s in todo if s.experiment_id in free], []
            if not pending:
                break
            bar.retake(len(pending))
    finally:
        bar.close()
    return rows


def summary_table(rows: list[dict]) -> str:
    """A fixed-width table of finished runs for the terminal."""
    lines = [f"{'experiment_id':<52} {'status':<13} {'size':>5} {'time s':>8} {'drawdown':>9} {'min margin':>10}"]
    for row in sorted(rows, key=lambda r: r["experiment_id"]):
        def num(key, fmt):
            value = row.get(key)
            return format(value, fmt) if isinstance(value, (int, float)) and np.isfinite(value) else "-"
        lines.append(f"{row['experiment_id']:<52} {row['status']:<13} {num('actual_repair_set_size', 'd'):>5} "
                     f"{num('repair_runtime_seconds', '.2f'):>8} {num('drawdown', '.2f'):>9} "
                     f"{num('saved_min_margin', '.4f'):>10}")
    return "\n".join(lines)
