"""The reference encoding of the repair LP: every variable and every row, |.| and max by epigraph rows."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp import rows as lr
from alexnet_repair.repair.lp.spec import LPSolution, LPSpec, objective_terms
from alexnet_repair.solvers import Problem, SolveOptions, SolveResult, Status, solve

log = logging.getLogger(__name__)


# Over 60 lines: the reference encoding, kept as one readable list of row blocks on purpose.
def encode_straightforward(spec: LPSpec, net: nw.Network | None = None):
    """The reference encoding: every variable and every row of the LP, |.| and max by epigraph rows.

    Returns (Problem, decode) with ``decode(x) -> (dW (|R|, in_k), [db_0, ..., db_{L-1}])``.
    """
    net = net or nw.original_network(spec)
    n_pts, n_layers = spec.inputs.shape[0], net.n_layers
    terms = objective_terms(spec)
    cols = lr.repair_columns(net)
    dw, db, u, v_cols = cols.dw, cols.db, cols.u, cols.v
    n_base = cols.layout.n
    lo = np.full(n_base, -spec.bound)
    hi = np.full(n_base, spec.bound)
    lo[u.ravel()], hi[u.ravel()] = -np.inf, np.inf
    if n_layers > 1:
        plo, phi = nw.pattern_change_bounds(net.z0[0][:, net.rows], net.active[0][:, net.rows], spec.pattern_eps)
        lo[u.ravel()], hi[u.ravel()] = plo.ravel(), phi.ravel()
        lo[v_cols.ravel()], hi[v_cols.ravel()] = -np.inf, np.inf

    def_rows = lr.u_definition_rows(net, cols, n_base)
    n_def = def_rows.shape[0]
    blocks_a, blocks_lo, blocks_hi = [def_rows], [np.zeros(n_def)], [np.zeros(n_def)]
    for layer in range(1, n_layers):  # later layers: logits definition, or pattern rows
        pts, units = np.divmod(np.arange(n_pts * spec.weights[layer].shape[0]), spec.weights[layer].shape[0])
        aff = lr.affine_rows(net, layer, pts, units, u, db, n_base)
        if layer == n_layers - 1:
            eye = sp.csr_matrix((np.ones(pts.size), (np.arange(pts.size), v_cols.ravel())), shape=aff.shape)
            blocks_a.append(eye - aff)
            blocks_lo.append(np.zeros(pts.size))
            blocks_hi.append(np.zeros(pts.size))
        else:
            plo, phi = nw.pattern_change_bounds(net.z0[layer], net.active[layer], spec.pattern_eps)
            blocks_a.append(aff)
            blocks_lo.append(plo.ravel())
            blocks_hi.append(phi.ravel())
    m_a, m_lo, _ = lr.margin_rows(v_cols, None, spec.targets, net.z0[-1], spec.point_margins(), n_base)
    blocks_a.append(m_a)
    blocks_lo.append(m_lo)
    blocks_hi.append(np.full(m_lo.size, np.inf))

    # epigraph: e >= +-x for every entry x of d, t >= e
    d_idx = [dw.ravel()] + [b.ravel() for b in db]
    if terms.outputs:
        v_edit = v_cols[: spec.n_edit_points].ravel()  # preserve points' outputs carry no weight
        d_idx.append(v_edit[v_edit >= 0])
    d_idx = np.concatenate(d_idx)
    n_d = d_idx.size
    e0 = n_base
    t_col = n_base + n_d if terms.w_l1 else n_base
    n_cols = t_col + (1 if terms.w_inf else 0)
    rows_epi = []
    ar = np.arange(n_d)
    if terms.w_l1:
        for sgn in (1.0, -1.0):  # e - sgn * x >= 0
            rows_epi.append(sp.csr_matrix((np.r_[np.ones(n_d), -sgn * np.ones(n_d)],
                                           (np.r_[ar, ar], np.r_[e0 + ar, d_idx])), shape=(n_d, n_cols)))
        if terms.w_inf:  # t - e >= 0
            rows_epi.append(sp.csr_matrix((np.r_[np.ones(n_d), -np.ones(n_d)],
                                           (np.r_[ar, ar], np.r_[np.full(n_d, t_col), e0 + ar])), shape=(n_d, n_cols)))
    else:
        for sgn in (1.0, -1.0):  # t - sgn * x >= 0
            rows_epi.append(sp.csr_matrix((np.r_[np.ones(n_d), -sgn * np.ones(n_d)],
                                           (np.r_[ar, ar], np.r_[np.full(n_d, t_col), d_idx])), shape=(n_d, n_cols)))
    a_base = sp.vstack(blocks_a).tocsr()
    a_base.resize((a_base.shape[0], n_cols))
    A = sp.vstack([a_base] + rows_epi).tocsc()
    row_lo = np.concatenate(blocks_lo + [np.zeros(n_d)] * len(rows_epi))
    row_hi = np.concatenate(blocks_hi + [np.full(n_d, np.inf)] * len(rows_epi))
    c = np.zeros(n_cols)
    col_lo = np.r_[lo, np.zeros(n_cols - n_base)]
    col_hi = np.r_[hi, np.full(n_cols - n_base, np.inf)]
    if terms.w_l1:
        c[e0:e0 + n_d] = terms.w_l1
    if terms.w_inf:
        c[t_col] = terms.w_inf
    problem = Problem(c=c, A=A, row_lo=row_lo, row_hi=row_hi, col_lo=col_lo, col_hi=col_hi,
                      name=f"repair-straightforward-{spec.objective}")

    def decode(x: np.ndarray):
        return x[dw], [x[b] for b in db]

    return problem, decode


def _solution_from(res: SolveResult, decode, formulation: str, build_time: float) -> LPSolution:
    sol = LPSolution(res.status, None, None, None, res, build_time, res.runtime, formulation,
                     res.n_vars, res.n_rows, res.nnz, res.message, 1, dict(res.iterations or {}))
    if res.status == Status.OPTIMAL and res.x is not None:
        sol.dW, sol.db = decode(res.x)
        sol.objective = float(res.objective)
    return sol


def solve_straightforward(spec: LPSpec, net: nw.Network, solver: str = "auto",
                          options: SolveOptions | None = None) -> LPSolution:
    """Build the reference LP and solve it once with ``solver``."""
    t0 = time.perf_counter()
    problem, decode = encode_straightforward(spec, net)
    build = time.perf_counter() - t0
    log.info("straightforward LP: %d vars, %d rows, %d nnz (built in %.2fs)",
             problem.A.shape[1], problem.A.shape[0], problem.A.nnz, build)
    options = options or SolveOptions()
    if options.algorithm == "auto":  # every row in epigraph form: an interior point method (IPX) beats simplex
        options = replace(options, algorithm="ipm")
    res = solve(problem, solver=solver, options=options)
    return _solution_from(res, decode, "straightforward", build)
