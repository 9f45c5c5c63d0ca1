"""Best-effort repair when no repair of all edit images exists (``--on-infeasible max-fixed``).

Step 1 is the MILP of lp/milp.py (the largest fixable subset); step 2 the ordinary repair LP on that subset
(minimal change), written back and verified on it.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from alexnet_repair.data import CLASS_NAMES
from alexnet_repair.repair.bridge import apply_solution
from alexnet_repair.repair.lp import LPSpec, solve_repair_lp
from alexnet_repair.repair.lp.milp import max_fixed_subset
from alexnet_repair.repair.verify import verify
from alexnet_repair.solvers import SolveOptions, Status

log = logging.getLogger(__name__)


# Over 60 lines: a sequence of fallible steps (MILP, candidate LPs, verification), each filling the result.
def repair_max_fixed(model, images, labels, config, rows, spec: LPSpec, result, device="cpu", preserve=None) -> None:
    """Fill ``result`` (a RepairResult whose LP was infeasible) with the best-effort repair of the largest
    fixable subset: status "partial" with a verified model, or why there is none."""
    options = SolveOptions(algorithm="auto", threads=config.threads, time_limit=config.time_limit)
    milp = max_fixed_subset(spec, config.solver, options)
    result.build_time += milp.build_time
    result.solve_time += milp.solve_time
    result.n_solves += 1
    result.details = {"milp_status": milp.status.value, "milp_claimed": milp.claimed, "milp_bound": milp.bound,
                      "milp_gap": milp.gap, "milp_nodes": milp.nodes, "milp_time": milp.solve_time,
                      "milp_vars": milp.n_vars, "milp_rows": milp.n_rows, "milp_nnz": milp.nnz,
                      "milp_solver": f"{milp.backend} {milp.backend_version}".strip()}
    if milp.fixed is None:
        result.status = "time_limit" if milp.status == Status.TIME_LIMIT else "error"
        result.message = (f"max-fixed MILP found no solution ({milp.message or milp.status.value})"
                          + (f" within the time limit ({config.time_limit} s)" if config.time_limit else ""))
        return
    labels_np = np.asarray(labels)
    lp_options = SolveOptions(algorithm=config.algorithm, threads=config.threads, time_limit=config.time_limit)
    candidates = sorted({tuple(np.flatnonzero(m)) for m in (milp.chosen, milp.fixed)}, key=len, reverse=True)
    sol, keep = None, np.zeros(0, dtype=np.int64)
    for cand in candidates:
        keep = np.asarray(cand, dtype=np.int64)
        if keep.size == 0:
            break
        sub = replace(spec, inputs=spec.inputs[keep], targets=spec.targets[keep])
        sol = solve_repair_lp(sub, solver=config.solver, options=lp_options, formulation=config.formulation)
        result.build_time += sol.build_time
        result.solve_time += sol.solve_time
        result.n_solves += sol.n_solves
        if sol.status == Status.OPTIMAL and sol.dW is not None:
            break
        log.warning("LP on %d candidate points: %s", keep.size, sol.status.value)
    if keep.size and (sol.status != Status.OPTIMAL or sol.dW is None):
        result.status = "time_limit" if sol.status == Status.TIME_LIMIT else "error"
        result.message = f"the LP on the {keep.size} fixable images did not solve: {sol.message or sol.status.value}"
        return
    unfixed = np.setdiff1d(np.arange(len(labels_np)), keep)
    result.fixed_count = int(keep.size)
    result.unfixable_indices = unfixed.tolist()
    result.unfixable_labels = labels_np[unfixed].tolist()
    proven = milp.bound is not None and np.floor(milp.bound + 1e-6) <= keep.size
    result.details["proven_maximum"] = bool(proven)
    if keep.size == 0:
        result.status = "infeasible"
        result.message = (f"no edit image can be fixed within --param-bound {config.param_bound} and --margin "
                          f"{config.margin} on {config.layer}")
        return
    result.objective = sol.objective
    result.preserve_rows_added = sol.preserve_rows
    repaired = apply_solution(model, config.layer, rows, sol.dW, sol.db)
    check = verify(model, repaired, images, labels, config, rows, device, required=torch.as_tensor(keep),
                   preserve=preserve)
    result.verification = check
    if not check.ok:
        result.status = "verify_failed"
        result.message = "repaired model failed verification on the fixable subset: " + "; ".join(check.reasons)
        return
    result.status, result.model = "partial", repaired
    unfix = ", ".join(f"{i} ({CLASS_NAMES[c]})" for i, c in zip(result.unfixable_indices[:10], result.unfixable_labels))
    more = " ..." if len(result.unfixable_indices) > 10 else ""
    result.message = (f"{keep.size} of {len(labels_np)} edit images fixed (the "
                      f"{'proven maximum' if proven else f'best found, at most {milp.bound} fixable'}); not fixed: "
                      f"{unfix}{more}")
