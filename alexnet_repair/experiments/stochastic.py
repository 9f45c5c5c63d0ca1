"""Stochastic (sequential) repair: draw the full repair set of a kind, then repeatedly repair a random batch of
it, each time starting from the previous iteration's model. One CSV row per iteration.

A chain is (type, class, batch size, bound, margin, layer, method, objective, preserve size, seed); its key
``experiment_id`` is e.g. ``stoch_bs10_misclassified_c-_b5_m2_l6_s0_aprnn_auto`` (``..._p1000`` with a preserve
set, redrawn from the chain's current model with the chain's seed at every iteration; ``..._ol1`` with another
objective than APRNN's). Batches follow the earlier toolkit: the full
set is shuffled and cut into consecutive batches, reshuffled when exhausted (a fixed schedule per seed, so a
resumed chain draws the same batches). A failed repair leaves the model unchanged (a verified partial one, e.g.
max-fixed, is kept). Resume is per iteration: the model after iteration i is written
(``artifacts/experiments/<chain>/iter_<i>.pth``) before its row is appended, and a
rerun continues from the latest successful iteration's model. A chain is claimed (:mod:`.claims`) while it runs, so
several runners on one CSV split the chains and never run one twice.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..editsets import SWEEP_TYPES, EditSet, build_editset
from ..errors import AlexRepairError, DataError
from ..model import layer_position, load_checkpoint, save_checkpoint
from ..paths import path_for, safe_name
from ..repair import run_method
from .claims import Claims
from .csvstore import append_row, drop_rows, is_true, read_csv, store_row
from ..evaluate import FeatureCache
from .pool import run_all, threads_per_worker
from .progress import Progress
from .rows import error_fields, provenance_fields, result_fields, settings_fields, timestamp
from .schema import STOCHASTIC_COLUMNS as COLUMNS
from .schema import STOCHASTIC_SCHEMA as SCHEMA
from .settings import RepairSettings, check_settings, settings_grid
from .setup import SweepContext, data_source, repair_config

log = logging.getLogger(__name__)

# Defaults of a stochastic sweep, in one place.
DEFAULT_BATCH_SIZES = (10, 25)           # images repaired per iteration
DEFAULT_ITERATIONS = 5                   # sequential repairs per chain
DEFAULT_TYPES = ("misclassified",)       # kinds of full repair set
DEFAULT_FULL_SET_SIZE = None             # cap on the full repair set (None: every candidate of the kind)


@dataclass(frozen=True)
class ChainSpec(RepairSettings):
    batch_size: int = 0

    @property
    def chain_id(self) -> str:
        return safe_name(f"stoch_bs{self.batch_size}_{self.repair_set_type}_{self.settings_tag}")


def build_chains(types, batch_sizes, classes, bounds, margins, layers, methods, seeds, solver="auto", **more):
    """Every chain, after the same checks as a grid's (``more``: see grid.build_grid)."""
    check_settings(types, [1], classes, bounds, margins, methods, **more)
    grids = {kind: settings_grid(kind, classes, bounds, margins, layers, methods, seeds, solver, **more)
             for kind in types}
    if any(int(b) < 1 for b in batch_sizes):
        raise AlexRepairError("--batch-sizes must be positive")
    out = [ChainSpec(batch_size=batch, **settings)
           for kind, batch in itertools.product(types, sorted(set(map(int, batch_sizes)))) for settings in grids[kind]]
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


def run_chain(spec: ChainSpec, ctx: SweepContext, base, output, iterations: int, full_set_size=None,
              threads: int | None = None, keep_models: bool = False, retry_failed: bool = False, on_iteration=None
              ) -> list[dict]:
    """Run (or continue) one chain up to ``iterations``; appends a row per iteration; returns the new rows."""
    setup = ctx.setup
    rows = chain_rows(output, spec.chain_id)
    done = sorted((r for r in rows if int(r["iteration"]) >= 1), key=lambda r: int(r["iteration"]))
    failed_setup = [r for r in rows if int(r["iteration"]) == 0]
    if (failed_setup and not retry_failed) or (done and int(done[-1]["iteration"]) >= iterations):
        return []
    kind, focus = SWEEP_TYPES[spec.repair_set_type]
    common = {"experiment_id": spec.chain_id, "schema": SCHEMA, "sweep_key": stochastic_key(ctx.sweep_key,
              full_set_size), "batch_size": spec.batch_size, "homogeneity": spec.repair_set_type,
              **settings_fields(spec), **provenance_fields(ctx, threads),
              "baseline_test_accuracy": ctx.cache.base_predictions().accuracy()}
    try:
        full = build_editset(base, ctx.edit, kind, target_class=spec.target_class, focus=focus or "incorrect",
                             max_size=full_set_size, sizing="flexible", holdout_fraction=0.0, seed=spec.seed,
                             device=setup.device, predictions=ctx.base_edit, progress=False)
    except AlexRepairError as err:
        row = {**common, "iteration": 0, "row_id": f"{spec.chain_id}_it0", **error_fields(str(err)),
               "timestamp": timestamp()}
        store_row(output, row, COLUMNS, replace_key="row_id" if failed_setup else None)
        return [row]
    if failed_setup:  # the chain's setup works now: drop the old error row
        drop_rows(output, "row_id", [r["row_id"] for r in failed_setup], COLUMNS)
    full_cache = FeatureCache.build(base, ctx.edit, {layer_position(spec.layer)}, index=full.indices,
                                    device=setup.device)
    common.update(full_set_size=len(full), candidates=full.meta["candidates"],
                  baseline_full_repair_accuracy=full_cache.base_predictions().accuracy())
    schedule = batch_schedule(len(full), spec.batch_size, iterations, spec.seed)
    model, start, successes = _resume(spec, base, output, done)
    new_rows = []
    for it in range(start, iterations + 1):
        model, row = _iterate(spec, ctx, base, model, full, full_cache, schedule[it - 1], it, output, threads,
                              common)
        successes += bool(row["success"])
        row.update(successes_so_far=successes,
                   test_accuracy=ctx.cache.predictions(model, base, setup.device).accuracy(),
                   full_repair_accuracy=full_cache.predictions(model, base, setup.device).accuracy(),
                   cumulative_max_abs_change=max_abs_difference(base, model), timestamp=timestamp())
        append_row(output, row, COLUMNS)
        if row.get("model_path") and not keep_models:
            _prune_checkpoints(path_for("chain_model", chain_id=spec.chain_id, iteration=it, sweep_csv=output))
        new_rows.append(row)
        if on_iteration is not None:
            on_iteration(row)
    return new_rows


def _resume(spec: ChainSpec, base, output, done: list[dict]) -> tuple[torch.nn.Module, int, int]:
    """Where a chain with the rows ``done`` continues: its model (the latest saved one, else ``base``), the next
    iteration and the successes so far."""
    if not done:
        return base, 1, 0
    successes = sum(is_true(r["success"]) for r in done)
    last_ok = [int(r["iteration"]) for r in done if r.get("model_path")]
    model = base
    if last_ok:
        path = path_for("chain_model", chain_id=spec.chain_id, iteration=last_ok[-1], sweep_csv=output)
        if not path.is_file():
            raise DataError(f"cannot continue chain {spec.chain_id}: its model after iteration {last_ok[-1]} "
                            f"({path}) is gone; remove the chain's rows from {output} to restart it")
        model = load_checkpoint(path)
    return model, int(done[-1]["iteration"]) + 1, successes


def _iterate(spec: ChainSpec, ctx: SweepContext, base, model, full: EditSet, full_cache: FeatureCache, pick, it: int,
             output, threads, common: dict) -> tuple[torch.nn.Module, dict]:
    """Repair batch ``pick`` of ``full`` from ``model``: the model the chain moves on with and the iteration's row
    (the metrics after it still to add). A successful or verified partial repair is saved before its row."""
    setup = ctx.setup
    batch = EditSet(full.images[pick], full.labels[pick], full.indices[pick], np.zeros(0, np.int64),
                    {**full.meta, "actual_size": len(pick), "indices": full.indices[pick].tolist()})
    before = full_cache.predictions(model, base, setup.device)
    config = repair_config(setup, spec, threads)
    row = {**common, "iteration": it, "row_id": f"{spec.chain_id}_it{it}", "batch_indices": full.indices[pick].tolist(),
           "batch_accuracy_before": float(100.0 * (before.preds[pick] == before.labels[pick]).mean())}
    try:
        result = run_method(model, batch, config, data_source(setup), seed=spec.seed, device=setup.device)
    except AlexRepairError as err:
        row.update(error_fields(str(err)))
        return model, row
    row.update(result_fields(result), batch_repair_time=result.total_time)
    if result.model is not None:      # success, or a verified partial repair: the chain moves on
        model = result.model
        path = path_for("chain_model", chain_id=spec.chain_id, iteration=it, sweep_csv=output)
        save_checkpoint(model, path)        # before the row: a resumed chain always finds its model
        row["model_path"] = str(path)
    return model, row


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


# ---- worker processes --------------------------------------------------------------------------------------------

def run_claimed(spec: ChainSpec, ctx: SweepContext, base, threads: int | None, options: dict) -> int | None:
    """Claim the chain and run (or continue) it while the claim is held: run_chain re-reads the chain's rows under
    the claim, so a chain another runner advanced meanwhile continues from there. The iterations run, or None when
    another runner holds the chain."""
    with Claims(options["output"]).hold(spec.chain_id) as got:
        return len(run_chain(spec, ctx, base, threads=threads, **options)) if got else None


def _worker_state(ctx: SweepContext, threads: int, options: dict):
    return ctx, load_checkpoint(ctx.setup.weights), threads, options


def _work(state, spec: ChainSpec) -> tuple[str, int | None]:
    ctx, base, threads, options = state
    return spec.chain_id, run_claimed(spec, ctx, base, threads, options)


def execute_chains(chains: list[ChainSpec], ctx: SweepContext, output, iterations: int, full_set_size=None,
                   jobs: int = 1, threads: int | None = None, keep_models: bool = False, retry_failed: bool = False,
                   progress: bool = True) -> int:
    """Run every chain (in ``jobs`` processes, each under its claim, appending its own rows); returns the iterations
    run here. Chains another runner holds are left to it; a pass at the end takes over those whose claim has been
    dropped before the chain was complete (the runner died)."""
    threads = threads_per_worker(jobs, threads)
    options = dict(output=str(output), iterations=iterations, full_set_size=full_set_size, keep_models=keep_models,
                   retry_failed=retry_failed)
    bar = Progress(len(chains) * iterations, "stochastic", "iteration", done=_finished(output, chains, iterations),
                   enabled=progress)
    in_process = jobs <= 1    # in this process the count moves per iteration; from workers per finished chain
    if in_process:
        options["on_iteration"] = lambda row: bar.update(1, failed=not row["success"], note=row["row_id"])
    count, claimed = 0, []

    def finished(result: tuple[str, int | None]) -> None:
        nonlocal count
        chain_id, n = result
        if n is None:
            claimed.append(chain_id)
        elif not in_process:
            bar.update(n, note=chain_id)
        count += n or 0

    claims, pending = Claims(output), chains
    try:
        for _ in range(3):      # the pass over the chains, then takeovers of claims dropped before the end
            run_all(_work, pending, _worker_state, (ctx, threads, options), jobs, threads, finished)
            left = [c for c in chains if c.chain_id in claimed and not claims.held(c.chain_id)]
            pending, claimed = [c for c in left if not _complete(output, c, iterations)], []
            if not pending:
                break
    finally:
        bar.close()
    return count


def _finished(output, chains: list[ChainSpec], iterations: int) -> int:
    """Iterations of ``chains`` already in the CSV."""
    _, rows = read_csv(output)
    finished = {(r["experiment_id"], r["iteration"]) for r in rows}
    return sum((c.chain_id, str(i)) in finished for c in chains for i in range(1, iterations + 1))


def _complete(output, chain: ChainSpec, iterations: int) -> bool:
    return any(int(r["iteration"]) >= iterations for r in chain_rows(output, chain.chain_id))
