"""APRNN, the provable repair: the LP of ``config`` on the edit images, solved, written back into a float32
model and verified; a repair is ``success`` only when that saved model passes :func:`verify`."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import torch

from alexnet_repair import __version__
from alexnet_repair.model import AlexNet
from alexnet_repair.progress_log import progress
from alexnet_repair.repair.bridge import apply_solution, lp_spec, prepare
from alexnet_repair.repair.lp import LPSpec, solve_repair_lp
from alexnet_repair.repair.lp.network import original_network
from alexnet_repair.repair.aprnn.maxfixed import repair_max_fixed
from alexnet_repair.repair.types import RepairConfig, RepairResult, Verification
from alexnet_repair.repair.verify import verify
from alexnet_repair.solvers import SolveOptions, Status

log = logging.getLogger(__name__)

MARGIN_RETRIES = 2  # re-solves with a larger margin slack when float32 rounding alone misses the margin


def repair_aprnn(model: AlexNet, images: torch.Tensor, labels: torch.Tensor, config: RepairConfig,
           device="cpu", preserve=None) -> RepairResult:
    """APRNN pointwise repair of ``model`` on (images (N,3,64,64), labels (N,)); never modifies ``model``.

    ``preserve`` (an editsets.PreserveSet): images that must keep their label with ``preserve.margin``."""
    start = time.perf_counter()
    model, labels, rows = prepare(model, images, labels, config, device)
    progress.info("repair: the inputs of %s for %s", config.layer, _images_text(images, preserve))
    spec = lp_spec(model, images, labels, config, rows, device, preserve)
    progress.info("repair: solving the LP (%s, formulation %s; %.1f s so far)", config.solver, config.formulation,
                  time.perf_counter() - start)
    prep = time.perf_counter() - start
    options = SolveOptions(algorithm=config.algorithm, threads=config.threads, time_limit=config.time_limit)
    sol, repaired, check, spent = _solve_and_verify(model, images, labels, config, rows, spec, options, device,
                                                    preserve)
    result = RepairResult(status="error", message="", config=config, rows=None if rows is None else rows.tolist(),
                          objective=sol.objective, build_time=prep + spent[0], solve_time=spent[1],
                          formulation=sol.formulation, iterations=dict(sol.iterations), n_vars=sol.n_vars,
                          n_rows=sol.n_rows, nnz=sol.nnz, n_solves=spent[2],
                          preserve_size=0 if preserve is None else len(preserve), preserve_rows_added=sol.preserve_rows,
                          preserve_indices=None if preserve is None else preserve.indices.tolist())
    if sol.solve is not None:
        result.solver, result.solver_version = sol.solve.backend, sol.solve.backend_version
    else:  # solved by the toolkit's own certified interior-point method (repair/lp/ipm/certified.py), no external solver
        result.solver, result.solver_version = f"builtin-{sol.formulation}", __version__
    if sol.status == Status.INFEASIBLE and config.on_infeasible == "max-fixed":
        repair_max_fixed(model, images, labels, config, rows, spec, result, device, preserve)
    elif sol.status != Status.OPTIMAL or sol.dW is None:
        result.status = {Status.INFEASIBLE: "infeasible", Status.TIME_LIMIT: "time_limit"}.get(sol.status, "error")
        result.message = _failure_message(result.status, config, sol.message)
    else:
        result.verification = check
        if check.ok:
            result.status, result.model = "success", repaired
            result.fixed_count, result.unfixable_indices, result.unfixable_labels = check.total, [], []
            result.message = (f"all {check.total} edit images fixed with min margin {check.min_margin:.4f} "
                              f"(max |change| {check.max_abs_change:.4g})")
            if check.preserve_total:
                result.message += (f"; all {check.preserve_total} preserve images kept (min margin "
                                   f"{check.preserve_min_margin:.4f}, {sol.preserve_rows} preserve rows added)")
        else:
            result.status, result.message = "verify_failed", "repaired model failed verification: " + "; ".join(
                check.reasons)
    result.total_time = time.perf_counter() - start
    log.info("repair %s in %.2fs: %s", result.status, result.total_time, result.message)
    return result


def _solve_and_verify(model, images, labels, config: RepairConfig, rows, spec, options, device, preserve=None):
    """Solve the LP and verify the float32 model; when that model misses the margin by rounding alone
    (everything else holds, shortfall tiny), re-solve with a larger margin slack, up to MARGIN_RETRIES times.

    Returns (LPSolution, repaired model or None, Verification or None, (build s, solve s, solves) summed).
    """
    spent, limit = [0.0, 0.0, 0], options.time_limit
    for attempt in range(MARGIN_RETRIES + 1):
        if limit is not None and attempt:  # re-solves share the one time limit
            options = replace(options, time_limit=max(limit - spent[0] - spent[1], 1e-3))
        sol = solve_repair_lp(spec, solver=config.solver, options=options, formulation=config.formulation)
        spent = [spent[0] + sol.build_time, spent[1] + sol.solve_time, spent[2] + sol.n_solves]
        if sol.status != Status.OPTIMAL or sol.dW is None:
            return sol, None, None, tuple(spent)
        repaired = apply_solution(model, config.layer, rows, sol.dW, sol.db)
        progress.info("repair: verifying the saved float32 model on %s", _images_text(images, preserve))
        check = verify(model, repaired, images, labels, config, rows, device, preserve=preserve)
        if check.ok or attempt == MARGIN_RETRIES or not _rounding_only(check, config, spec):
            return sol, repaired, check, tuple(spent)
        shortfall = _shortfall(check, config)
        spec.margin_slack = max(2 * spec.margin_slack, spec.margin_slack + 4 * shortfall)
        log.warning("the float32 model missed the margin by %.3g (rounding of large logits); re-solving with "
                    "margin slack %.3g", shortfall, spec.margin_slack)


def _images_text(images, preserve) -> str:
    return f"{len(images)} edit images" + ("" if preserve is None else f" and {len(preserve)} preserve images")


def _shortfall(check: Verification, config: RepairConfig) -> float:
    """By how much the float32 model missed a margin: the edit images' or the preserve images' (0: neither)."""
    edit = config.margin - check.min_margin
    kept = -check.preserve_min_excess if check.preserve_total else 0.0
    return max(edit, kept, 0.0)


def _rounding_only(check: Verification, config: RepairConfig, spec: LPSpec) -> bool:
    """Whether a failed check missed only a margin (edit or preserve), by no more than float32 rounding noise at
    this logit scale."""
    if not (check.within_bound and check.untouched_identical and not check.pattern_flips):
        return False
    logit_scale = float(np.abs(original_network(spec).z0[-1]).max(initial=0.0))
    return 0 < _shortfall(check, config) <= 1e-2 * max(1.0, config.margin) + 1e-5 * logit_scale


def _failure_message(status: str, config: RepairConfig, detail: str) -> str:
    if status == "infeasible" and config.preserve:
        which = "all the" if config.preserve == "all" else f"the {config.preserve}"
        return (f"no repair exists within --param-bound {config.param_bound} and --margin {config.margin} on "
                f"{config.layer} that keeps {which} preserve images (--preserve-margin "
                f"{config.preserve_margin}): try fewer --preserve images, a smaller --preserve-margin, a larger "
                f"--param-bound, an earlier --layer, or --on-infeasible max-fixed")
    if status == "infeasible":
        return (f"no repair exists within --param-bound {config.param_bound} and --margin {config.margin} on "
                f"{config.layer}: try a larger --param-bound, a smaller --margin, an earlier --layer, "
                f"or --on-infeasible max-fixed")
    if status == "time_limit":
        return f"the solver hit the time limit ({config.time_limit} s) before proving an optimal repair"
    return f"solver error: {detail or 'unknown'}"
