"""Column generation over the weight changes dW, with lazy rows: the fast exact encoding.

Restricted master LP (columns): dW+/dW- only for a working set E of entries (r, j),
db+/db- for every bias, u (pre-activation changes of layer k, L > 1), v+/v- (logit changes),
t (the inf-norm level), an elastic slack s >= 0 on every margin row and a pair of elastic
slacks on every lazy pattern row. Rows: u-definitions, logit definitions (L > 1), margins,
|v| <= t, |db| <= t, and lazily |dW_e| <= t (entry e in E) and the pattern rows of layers
k+2..m-1 (added when violated).

Two phases, no big-M: phase 1 minimises the total slack (the objective is 0 elsewhere);
when it reaches 0, phase 2 fixes every slack at 0 and minimises the real objective. A phase-2
master made infeasible by a new lazy row goes back to phase 1. Phase 1 ending with slack > 0,
no column pricing out and no row violated proves the exact LP infeasible.

Pricing is exact: a missing column dW+_rj has reduced cost w_l1 + G_rj (dW-_rj: w_l1 - G_rj)
with G = Y^T A, Y (N, |R|) the duals of the u-definition rows and A (N, in_k) the inputs;
its |dW| <= t row would be slack (t > 0), so its dual is 0 (w_l1 = 0 in phase 1, where t is
free). A missing row is satisfied by the current point. So when no column prices out and no
row is violated in phase 2, the restricted optimum is an optimum of the exact LP.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from alexnet_repair.progress_log import progress
from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp.colgen_master import Master, split_solution
from alexnet_repair.repair.lp.spec import LPSolution, LPSpec, objective_terms
from alexnet_repair.solvers import Problem, SolveOptions, Status, choose_backend, solve
from alexnet_repair.solvers.base import BASIS_BASIC, BASIS_LOWER

log = logging.getLogger(__name__)

RC_TOL = 1e-9  # a column prices out when its reduced cost < -RC_TOL * (cost scale)
ROW_TOL = 1e-9  # a lazy row is violated when off by more than this
SLACK_TOL = 1e-9  # phase 1 calls the restricted master feasible at this total slack


def _warm_start(master: Master, prev, e: int, n_epi: int):
    """The previous master's optimal basis, extended to this master: new dW and slack columns nonbasic at their
    lower bound, new rows (lazy pattern and |dW| <= t rows) basic. ``prev`` = (basis, e, n_lazy, n_epi) or None."""
    if prev is None or prev[0] is None:
        return None
    (cols, rows), e0, lazy0, epi0 = prev
    nf, lazy, nrf = master.n_fixed, master.n_lazy, master.A_fixed.shape[0]
    low, basic = np.int8(BASIS_LOWER), np.int8(BASIS_BASIC)

    def grow(block, new_size):
        return np.r_[block, np.full(new_size - block.size, low)]

    col = np.concatenate([cols[:nf], grow(cols[nf:nf + e0], e), grow(cols[nf + e0:nf + 2 * e0], e),
                          grow(cols[nf + 2 * e0:nf + 2 * e0 + lazy0], lazy),
                          grow(cols[nf + 2 * e0 + lazy0:nf + 2 * e0 + 2 * lazy0], lazy)])
    row = np.concatenate([rows[:nrf], rows[nrf:nrf + lazy0], np.full(lazy - lazy0, basic),
                          rows[nrf + lazy0:nrf + lazy0 + epi0], np.full(n_epi - epi0, basic)])
    return col, row


def _warm_algorithm(new_cols: int, new_rows: int, phase1: bool) -> str:
    """The algorithm for a warm-started master: dual simplex ("auto"), except in phase 1 when only columns
    arrived (large batches, slack far from 0): HiGHS's IPX with crossover, so the next round still gets a basis.
    Dual simplex re-optimises a basis after new columns and rows fastest; a phase 1 with only new columns is
    far from that basis, where IPX wins (measured: bench/README.md, "Tuning")."""
    return "ipm" if phase1 and new_cols and not new_rows else "auto"


def _resolve_backend(solver: str, n_vars: int, n_rows: int) -> str:
    """One backend for all rounds: "auto" is decided on the size of the unrestricted master."""
    if solver != "auto":
        return solver
    proxy = Problem(c=np.zeros(n_vars), A=sp.csc_matrix((n_rows, n_vars)), row_lo=np.zeros(n_rows),
                    row_hi=np.zeros(n_rows), col_lo=np.zeros(n_vars), col_hi=np.zeros(n_vars))
    return choose_backend(proxy, "auto")


# Over 60 lines: one loop of two phases whose state (working set, lazy rows, phase) is clearer kept together.
def solve_colgen(spec: LPSpec, net: nw.Network, solver: str = "auto", options: SolveOptions | None = None,
                 per_round: int | None = None) -> LPSolution:
    """Exact optimum of the repair LP by two-phase column generation over dW (see module doc)."""
    options = options or SolveOptions()
    t_start = time.perf_counter()
    deadline = None if options.time_limit is None else t_start + options.time_limit
    terms = objective_terms(spec)
    cscale = 1.0 / terms.w_l1 if terms.w_l1 else 1.0  # solve with O(1) costs (simplex converges faster)
    scale = max(terms.w_inf, terms.w_l1 * terms.length) * cscale  # scaled objective ~ O(scale)
    master = Master(spec, net, cscale)
    n_r, n_in = net.rows.size, spec.inputs.shape[1]
    solver = _resolve_backend(solver, master.n_fixed + 2 * n_r * n_in, master.A_fixed.shape[0])
    per_round = per_round or max(256, 2 * master.n_def)
    in_set = np.zeros((n_r, n_in), dtype=bool)
    r_sel = np.zeros(0, dtype=np.int64)
    j_sel = np.zeros(0, dtype=np.int64)
    epi = np.zeros(0, dtype=np.int64)
    build_time = time.perf_counter() - t_start
    sol = LPSolution(Status.ERROR, None, None, None, None, build_time, 0.0, "colgen", 0, 0, 0)
    phase1, strict = True, False  # strict: phase 1 prices until no column helps, however small the slack
    rows_since_phase1 = phase1_rounds = 0
    prev = None  # (basis, |E|, lazy rows, |dW| <= t rows, phase) of the last optimal master: the next starts there
    while True:
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0:
            sol.status, sol.message = Status.TIME_LIMIT, "time limit reached during column generation"
            break
        tb = time.perf_counter()
        prob = master.problem(r_sel, j_sel, epi, phase1)
        if prev is not None and prev[4] == phase1:  # warm within a phase (a phase switch changes every cost)
            prob.start_basis = _warm_start(master, prev[:4], r_sel.size, epi.size)
        sol.build_time += time.perf_counter() - tb
        opts = SolveOptions(**{**vars(options), "time_limit": remaining})
        if prob.start_basis is not None and opts.algorithm == "auto":
            opts.algorithm = _warm_algorithm(r_sel.size - prev[1], master.n_lazy + epi.size - prev[2] - prev[3],
                                             phase1)
        res = solve(prob, solver=solver, options=opts)
        sol.solve, sol.n_solves = res, sol.n_solves + 1
        sol.solve_time += res.runtime
        for k, v in (res.iterations or {}).items():
            sol.iterations[k] = sol.iterations.get(k, 0) + (v or 0)
        if prob.A.nnz >= sol.nnz:
            sol.n_vars, sol.n_rows, sol.nnz = prob.A.shape[1], prob.A.shape[0], prob.A.nnz
        if res.status == Status.INFEASIBLE and not phase1:  # a new lazy row cut the restricted point off
            if strict and rows_since_phase1 == 0:
                sol.status, sol.message = Status.ERROR, ("column generation: the restricted master is feasible in "
                                                         "phase 1 but not in phase 2 (numerical trouble); try "
                                                         "--formulation straightforward")
                break
            strict = strict or rows_since_phase1 == 0  # none did: the phase-1 point was only nearly feasible
            phase1, rows_since_phase1 = True, 0
            log.debug("colgen round %d: phase-2 master infeasible, back to phase 1", sol.n_solves)
            continue
        if res.status != Status.OPTIMAL:
            sol.status, sol.message = res.status, f"restricted LP: {res.message}"
            break
        x, y = res.x, res.duals
        e = r_sel.size
        prev = (res.basis, e, master.n_lazy, epi.size, phase1)
        dw, db, u, t = split_solution(master, x, e)
        slack = master.slack(x, e)
        pt = time.perf_counter()
        added_rows = 0
        if master.t is not None and not phase1:  # lazy |dW_e| <= t rows (t is free in phase 1)
            have = np.zeros(e, dtype=bool)
            have[epi] = True
            new = np.flatnonzero((np.abs(dw) > t + ROW_TOL) & ~have)
            epi = np.r_[epi, new]
            added_rows += new.size
        if net.n_layers > 2:  # lazy pattern rows of layers 1..L-2
            dz = nw.propagate(net, u, db)
            for layer in range(1, net.n_layers - 1):
                lo, hi = nw.pattern_change_bounds(net.z0[layer], net.active[layer], spec.pattern_eps)
                pts, units = np.nonzero((dz[layer - 1] < lo - ROW_TOL) | (dz[layer - 1] > hi + ROW_TOL))
                n_before = len(master.lazy_keys)
                master.add_pattern_rows(layer, pts, units)
                added_rows += len(master.lazy_keys) - n_before
        rows_since_phase1 += added_rows
        if phase1 and not added_rows and slack <= (0.0 if strict else SLACK_TOL):
            log.debug("colgen round %d: feasible (slack %.3g), phase 2", sol.n_solves, slack)
            phase1, rows_since_phase1 = False, 0
            continue
        w_l1 = 0.0 if phase1 else terms.w_l1 * cscale
        g = y[:master.n_def].reshape(-1, n_r).T @ spec.inputs  # (|R|, in): reduced cost of dW+ is w_l1 + g
        rc = w_l1 - np.abs(g)
        rc[in_set] = np.inf
        cand = np.flatnonzero(rc.ravel() < -RC_TOL * (1.0 if phase1 else scale))
        # phase 1 doubles its batch each round: near an infeasible (tight) bound it needs most columns
        batch = per_round * 2 ** phase1_rounds if phase1 else per_round
        phase1_rounds += phase1
        if cand.size > batch:
            cand = cand[np.argpartition(rc.ravel()[cand], batch)[:batch]]
        if cand.size:
            r_new, j_new = np.divmod(cand, n_in)
            in_set[r_new, j_new] = True
            r_sel, j_sel = np.r_[r_sel, r_new], np.r_[j_sel, j_new]
        sol.build_time += time.perf_counter() - pt
        log.debug("colgen round %d (phase %d): |E|=%d obj=%.10g slack=%.3g +cols=%d +rows=%d min_rc=%.3g",
                  sol.n_solves, 1 if phase1 else 2, e, res.objective, slack, cand.size, added_rows, rc.min())
        state = "phase 1, margins not yet met" if phase1 else f"objective {res.objective / cscale:.6g}"
        progress.info("column generation round %d (%s): %d weight columns in the LP, %d join, %d rows join, %.1f s",
                      sol.n_solves, state, e, cand.size, added_rows, time.perf_counter() - t_start)
        if cand.size or added_rows:
            continue
        if phase1:
            sol.status, sol.message = Status.INFEASIBLE, f"infeasible: min total margin violation {slack:.3g}"
            break
        sol.status, sol.message = Status.OPTIMAL, f"colgen: {sol.n_solves} solves, |E|={e}"
        sol.dW = np.zeros((n_r, n_in))
        sol.dW[r_sel, j_sel] = dw
        sol.db = db
        sol.objective = float(res.objective) / cscale
        break
    log.info("colgen: %s in %d solves, |E|=%d, build %.2fs, solve %.2fs", sol.status.value, sol.n_solves,
             r_sel.size, sol.build_time, sol.solve_time)
    return sol
