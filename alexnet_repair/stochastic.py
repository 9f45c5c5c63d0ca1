"""Stochastic (sequential) repair: draw the full repair set of a kind, then repeatedly repair a random batch of
it, each time starting from the previous iteration's model. One CSV row per iteration.

A chain is (type, class, batch size, bound, margin, layer, method, seed); its key ``experiment_id`` is e.g.
``stoch_bs10_misclassified_c-_b5_m2_l6_s0_aprnn_auto``. Batches follow the earlier toolkit: the full set is
shuffled and cut into consecutive batches, reshuffled when exhausted (a fixed schedule per seed, so a resumed
chain draws the same batches). A failed repair leaves the model unchanged (a verified partial one, e.g.
max-fixed, is kept). Resume is per iteration: the model
after iteration i is written (``artifacts/experiments/<chain>/iter_<i>.pth``) before its row is appended, and a
rerun continues from the latest successful iteration's model.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .csvlog import append_row, is_true, read_csv, replace_rows
from .data import CLASS_NAMES
from .editsets import SWEEP_TYPES, EditSet, build_editset
from .errors import AlexRepairError, DataError
from .experiments import RepairSettings, SweepContext, artifact_dir, method_args, repair_config, settings_grid
from .workers import run_pool, threads_per_worker
from .featcache import FeatureCache, classifier_stop
from .model import load_checkpoint, save_checkpoint
from .repair import run_method
from .paths import safe_name

log = logging.getLogger(__name__)

SCHEMA = "alexnet_repair.stochastic/1"

# Defaults of a stochastic sweep, in one place.
DEFAULT_BATCH_SIZES = (10, 25)           # images repaired per iteration
DEFAULT_ITERATIONS = 5                   # sequential repairs per chain
DEFAULT_TYPES = ("misclassified",)       # kinds of full repair set
DEFAULT_FULL_SET_SIZE = None             # cap on the full repair set (None: every candidate of the kind)

COLUMNS = [
    "experiment_id", "iteration", "row_id", "timestamp", "schema", "sweep_key",
    "batch_size", "homogeneity", "target_class", "target_class_name", "param_bound", "margin", "layer", "method",
    "seed", "solver_requested", "full_set_size", "candidates",
    # the earlier toolkit's columns (accuracies in percent)
    "test_accuracy", "full_repair_accuracy", "batch_repair_time", "error_message",
    "status", "success", "successes_so_far", "batch_indices", "batch_accuracy_before",
    "baseline_test_accuracy", "baseline_full_repair_accuracy",
    "build_time", "solve_time", "solver", "solver_version", "solver_iterations", "n_vars", "n_rows", "nnz",
    "min_margin", "max_abs_change", "cumulative_max_abs_change", "fixed_count", "unfixable_indices",
    "threads", "weights_sha256", "git_commit", "toolkit_version", "model_path",
]


@dataclass(frozen=True)
class ChainSpec(RepairSettings):
    batch_size: int = 0

    @property
    def chain_id(self) -> str:
        return safe_name(f"stoch_bs{self.batch_size}_{self.repair_set_type}_{self.settings_tag}")


def build_chains(types, batch_sizes, classes, bounds, margins, layers, methods, seeds, solver="auto"):
    if any(int(b) < 1 for b in batch_sizes):
        raise AlexRepairError("--batch-sizes must be positive")
    out = [ChainSpec(batch_size=batch, **settings)
           for kind, batch in itertools.product(types, sorted(set(map(int, batch_sizes))))
           for settings in settings_grid(kind, classes, bounds, margins, layers, methods, seeds, solver)]
    return list(dict.fromkeys(out))


def stochastic_key(sweep_key: str, full_set_size) -> str:
    """The grid's sweep key plus the full-set cap: rows of one CSV must share it."""
    return hashlib.sha256(f"{sweep_key}/{full_set_size}".encode()).hexdigest()[:12]


def batch_schedule(n: int, batch_size: int, iterations: int, seed: int) -> list[np.ndarray]:
    """Positions in the full set for iterations 1..K: shuffled epochs cut into batches (reshuffled when short)."""
    rng = np.random.default_rng([seed, 7919])
    size = min(batch_size, n)
    order, pos, out = rng.permutation(n), 0, []
    for _ in range(iterations):
        if pos + size > n:
            order, pos = rng.permutation(n), 0
        out.append(np.sort(order[pos:pos + size]))
        pos += size
    return out


def chain_rows(path, chain_id: str) -> list[dict]:
    _, rows = read_csv(path)
    return [r for r in rows if r.get("experiment_id") == chain_id]


def checkpoint_path(chain_id: str, iteration: int, output) -> Path:
    """The model after ``iteration`` of a chain of the CSV ``output``."""
    return artifact_dir(chain_id, output) / f"iter_{iteration:04d}.pth"


def run_chain(spec: ChainSpec, ctx: SweepContext, base, output, iterations: int, full_set_size=None,
              threads: int | None = None, keep_models: bool = False, retry_failed: bool = False, on_iteration=None
              ) -> list[dict]:
    """Run (or continue) one chain up to ``iterations``; appends a row per iteration; returns the new rows."""

    setup = ctx.setup
    key = stochastic_key(ctx.sweep_key, full_set_size)
    rows = chain_rows(output, spec.chain_id)
    done = sorted((r for r in rows if int(r["iteration"]) >= 1), key=lambda r: int(r["iteration"]))
    failed_setup = [r for r in rows if int(r["iteration"]) == 0]
    if failed_setup and not retry_failed:
        return []
    if done and int(done[-1]["iteration"]) >= iterations:
        return []
    kind, focus = SWEEP_TYPES[spec.repair_set_type]
    common = {"experiment_id": spec.chain_id, "schema": SCHEMA, "sweep_key": key, "batch_size": spec.batch_size,
              "homogeneity": spec.repair_set_type, "target_class": spec.target_class,
              "target_class_name": None if spec.target_class is None else CLASS_NAMES[spec.target_class],
              "param_bound": spec.param_bound, "margin": spec.margin, "layer": spec.layer, "method": spec.method,
              "seed": spec.seed, "solver_requested": spec.solver, "threads": threads,
              "weights_sha256": ctx.weights_sha256, "git_commit": ctx.versions.get("git_commit"),
              "toolkit_version": __version__, "baseline_test_accuracy": ctx.cache.base_predictions().accuracy()}
    try:
        full = build_editset(base, ctx.edit, kind, target_class=spec.target_class, focus=focus or "incorrect",
                             max_size=full_set_size, sizing="flexible", holdout_fraction=0.0, seed=spec.seed,
                             device=setup.device, predictions=ctx.base_edit, progress=False)
    except AlexRepairError as err:
        row = {**common, "iteration": 0, "row_id": f"{spec.chain_id}_it0", "status": "error", "success": False,
               "error_message": str(err), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if failed_setup:
            replace_rows(output, "row_id", [row], COLUMNS)
        else:
            append_row(output, row, COLUMNS)
        return [row]
    if failed_setup:  # the chain's setup works now: drop the old error row
        _drop_rows(output, [r["row_id"] for r in failed_setup])
    stops = {classifier_stop(spec.layer)}
    full_cache = FeatureCache.build(base, ctx.edit, stops, index=full.indices, device=setup.device)
    common.update(full_set_size=len(full), candidates=full.meta["candidates"],
                  baseline_full_repair_accuracy=full_cache.base_predictions().accuracy())
    schedule = batch_schedule(len(full), spec.batch_size, iterations, spec.seed)
    model, start_it, successes = base, 1, 0
    if done:
        start_it = int(done[-1]["iteration"]) + 1
        successes = sum(is_true(r["success"]) for r in done)
        last_ok = [int(r["iteration"]) for r in done if r.get("model_path")]
        if last_ok:
            path = checkpoint_path(spec.chain_id, last_ok[-1], output)
            if not path.is_file():
                raise DataError(f"cannot continue chain {spec.chain_id}: its model after iteration {last_ok[-1]} "
                                f"({path}) is gone; remove the chain's rows from {output} to restart it")
            model = load_checkpoint(path)
    new_rows = []
    for it in range(start_it, iterations + 1):
        pick = schedule[it - 1]
        batch = EditSet(full.images[pick], full.labels[pick], full.indices[pick], np.zeros(0, np.int64),
                        {**full.meta, "actual_size": len(pick), "indices": full.indices[pick].tolist()})
        before = full_cache.predictions(model, base, setup.device)
        config = repair_config(setup, spec, threads)
        row = {**common, "iteration": it, "row_id": f"{spec.chain_id}_it{it}",
               "batch_indices": full.indices[pick].tolist(),
               "batch_accuracy_before": float(100.0 * (before.preds[pick] == before.labels[pick]).mean())}
        try:
            result = run_method(model, batch, config, method_args(setup, spec.seed), setup.device)
        except AlexRepairError as err:
            result = None
            row.update(status="error", success=False, error_message=str(err))
        if result is not None:
            rec = result.record()
            iters = rec.get("iterations") or {}
            row.update(status=result.status, success=result.success,
                       error_message="" if result.success else result.message,
                       batch_repair_time=result.total_time, build_time=result.build_time,
                       solve_time=result.solve_time, solver=result.solver, solver_version=result.solver_version,
                       solver_iterations=sum(int(iters.get(k, 0)) for k in ("simplex", "ipm", "pdlp")),
                       n_vars=result.n_vars, n_rows=result.n_rows, nnz=result.nnz,
                       fixed_count=rec.get("fixed_count"), unfixable_indices=rec.get("unfixable_indices"))
            if result.verification is not None:
                row.update(min_margin=result.verification.min_margin,
                           max_abs_change=result.verification.max_abs_change)
            if result.model is not None:      # success, or a verified partial repair: the chain moves on
                model = result.model
                path = checkpoint_path(spec.chain_id, it, output)
                save_checkpoint(model, path)        # before the row: a resumed chain always finds its model
                row["model_path"] = str(path)
        successes += bool(row["success"])
        row.update(successes_so_far=successes,
                   test_accuracy=ctx.cache.predictions(model, base, setup.device).accuracy(),
                   full_repair_accuracy=full_cache.predictions(model, base, setup.device).accuracy(),
                   cumulative_max_abs_change=max_abs_difference(base, model),
                   timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        append_row(output, row, COLUMNS)
        if row.get("model_path") and not keep_models:
            _prune_checkpoints(checkpoint_path(spec.chain_id, it, output))
        new_rows.append(row)
        if on_iteration is not None:
            on_iteration(row)
    return new_rows


def max_abs_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    if a is b:
        return 0.0
    sa, sb = a.state_dict(), b.state_dict()
    changed = [k for k, v in sa.items() if v.numel() and not torch.equal(v, sb[k])]
    return max((float((sb[k].double() - sa[k].double()).abs().max()) for k in changed), default=0.0)


def _prune_checkpoints(keep: Path) -> None:
    """Delete the chain's earlier models (the row of ``keep`` is written, so they are no longer needed)."""
    for path in keep.parent.glob("iter_*.pth"):
        if path.name != keep.name:
            path.unlink(missing_ok=True)


def _drop_rows(output, row_ids: list[str]) -> None:
    from .csvlog import atomic_write_text, locked, to_csv_text
    with locked(output):
        _, rows = read_csv(output)
        atomic_write_text(output, to_csv_text([r for r in rows if r.get("row_id") not in set(row_ids)], COLUMNS))


# ---- worker processes --------------------------------------------------------------------------------------------

def _worker_state(ctx: SweepContext, threads: int, options: dict):
    return ctx, load_checkpoint(ctx.setup.weights), threads, options


def _work(state, spec: ChainSpec) -> int:
    ctx, base, threads, options = state
    return len(run_chain(spec, ctx, base, threads=threads, **options))


def execute_chains(chains: list[ChainSpec], ctx: SweepContext, output, iterations: int, full_set_size=None,
                   jobs: int = 1, threads: int | None = None, keep_models: bool = False, retry_failed: bool = False,
                   progress: bool = True) -> int:
    """Run every chain (in ``jobs`` processes, each appending its own rows); returns the iterations run."""
    from tqdm import tqdm

    threads = threads_per_worker(jobs, threads)
    options = dict(output=str(output), iterations=iterations, full_set_size=full_set_size, keep_models=keep_models,
                   retry_failed=retry_failed)
    bar = tqdm(total=len(chains) * iterations, desc="stochastic", unit="iter", disable=not progress,
               dynamic_ncols=True)
    _, rows = read_csv(output)
    finished = {(r["experiment_id"], r["iteration"]) for r in rows}
    bar.update(sum((c.chain_id, str(i)) in finished for c in chains for i in range(1, iterations + 1)))
    count = 0

    def advance(n: int) -> None:
        nonlocal count
        count += n
        bar.update(n)

    try:
        if jobs <= 1:
            torch.set_num_threads(threads)
            base = load_checkpoint(ctx.setup.weights)
            for spec in chains:
                run_chain(spec, ctx, base, threads=threads, on_iteration=lambda row: advance(1), **options)
        else:
            run_pool(_work, chains, _worker_state, (ctx, threads, options), jobs, threads, advance)
    finally:
        bar.close()
    return count
