"""The max-fixed MILP (``--on-infeasible max-fixed``, step 1; repair/aprnn/maxfixed.py runs step 2).

Step 1, a MILP: the repair LP's variables and rows (``rows``), plus one binary z_i per edit point;
maximise sum_i z_i. Point i's margin rows AND its activation-pattern rows are relaxed by big-M when
z_i = 0: a point the repair gives up on is dropped entirely, exactly as if it were not in the edit set,
so the optimum is the largest subset S whose repair LP is feasible (no tie-break term: step 2 picks the
smallest change). Step 2: the ordinary repair LP on S (minimal change), written back and verified on S.

Big-M (valid for every parameter change in the box, whatever z is). With the pattern fixed to the
original one, for |dW|, |db| <= B:

    |u_i,r|   = |dW_r a_i + db_r|                      <= B (||a_i||_1 + 1) =: U_i      (rows r in R)
    |dz_l,i|  <= |W_l| (P_{l-1,i} |dz_{l-1,i}|) + B     (elementwise, |W_l| the entrywise absolute value,
                                                         P the 0/1 original pattern, dz_0 = u on R, 0 elsewhere)

so a row ``g(x) >= lo`` is relaxed to ``g(x) >= lo - M (1 - z_i)`` with M = max(0, lo + bound on |g|)
(margin row: g = v_t - v_c, |g| <= D_t + D_c; pattern rows: g = +-dz). Rows whose M is 0 always hold and
are dropped. The u and v columns get the same bounds (valid, and they tighten the relaxation).

The subset repaired is decided by the LP of step 2, not by the MILP alone: a big-M MILP's integrality
tolerance could "fix" a point by M * 1e-6. Candidates, largest first: the points with z_i = 1, and the
points whose rows hold at the MILP's parameter point (re-computed exactly); the first whose LP solves wins.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp import rows as lr
from alexnet_repair.repair.lp.lazy import lazy_rounds
from alexnet_repair.repair.lp.spec import LPSpec, other_classes
from alexnet_repair.solvers import Problem, SolveOptions, Status, solve

log = logging.getLogger(__name__)


@dataclass
class MaxFixedSolution:
    status: Status
    fixed: np.ndarray | None     # (N,) bool: points whose rows hold at the MILP's parameters
    chosen: np.ndarray | None    # (N,) bool: points with z_i = 1
    claimed: int                 # sum of the rounded z (the MILP's objective)
    bound: float | None          # the MILP's upper bound on the number of fixable points
    gap: float | None            # relative MIP gap (0 = proven maximum)
    solve_time: float
    build_time: float
    n_vars: int
    n_rows: int
    nnz: int
    backend: str = ""
    backend_version: str = ""
    nodes: int = 0
    message: str = ""


def change_bounds(net: nw.Network, bound: float) -> list[np.ndarray]:
    """Valid bounds D_l (N, out_l) on |dz_l| for every change in [-bound, bound] (see module doc); D_0 = U on R."""
    spec = net.spec
    u_max = bound * (np.abs(spec.inputs).sum(1) + 1.0)                  # (N,)
    d = np.zeros((spec.inputs.shape[0], spec.weights[0].shape[0]))
    d[:, net.rows] = u_max[:, None]
    out = [d]
    for l in range(1, net.n_layers):
        d = (d * net.active[l - 1]) @ np.abs(spec.weights[l]).T + bound
        out.append(d)
    return out


def _relaxed(a: sp.csr_matrix, lo: np.ndarray, g_max: np.ndarray, pts: np.ndarray, z_cols: np.ndarray, sign: float):
    """Rows ``sign * a x >= lo`` relaxed by z: ``sign*a x - M z_i >= lo - M``; rows with M = 0 are dropped."""
    big_m = np.maximum(0.0, lo + g_max)
    keep = np.isfinite(lo) & (big_m > 0)
    a = sign * a[keep]
    m, p = big_m[keep], pts[keep]
    zpart = sp.csr_matrix((-m, (np.arange(m.size), z_cols[p])), shape=a.shape)
    return (a + zpart).tocsr(), lo[keep] - m


# Over 60 lines: every block of the MILP shares the column layout and the big-M table built at its top.
def encode_max_fixed(spec: LPSpec, net: nw.Network | None = None):
    """The MILP of the module doc. Returns (Problem, decode, z) with decode(x) -> (dW, [db_0, ..]) and z (N,)
    the binary columns."""
    net = net or nw.original_network(spec)
    n_pts = spec.inputs.shape[0]
    n_layers, n_r, n_cls = net.n_layers, net.rows.size, spec.weights[-1].shape[0]
    dmax = change_bounds(net, spec.param_bound)
    cols = lr.repair_columns(net)
    dw, db, u, v = cols.dw, cols.db, cols.u, cols.v
    z = cols.layout.add("z", (n_pts,))
    n = cols.layout.n
    lo, hi = np.full(n, -spec.bound), np.full(n, spec.bound)
    lo[u.ravel()], hi[u.ravel()] = -dmax[0][:, net.rows].ravel(), dmax[0][:, net.rows].ravel()
    if n_layers > 1:
        lo[v.ravel()], hi[v.ravel()] = -dmax[-1].ravel(), dmax[-1].ravel()
    lo[z], hi[z] = 0.0, 1.0
    lo[z[spec.n_edit_points:]] = 1.0  # preserve points must hold: only edit points may be given up

    eq = lr.u_definition_rows(net, cols, n)
    n_def = eq.shape[0]
    a_rows, r_lo, r_hi = [eq], [np.zeros(n_def)], [np.zeros(n_def)]

    def add_pattern(g: sp.csr_matrix, layer: int, g_max: np.ndarray, pts: np.ndarray, units: np.ndarray):
        plo, phi = nw.pattern_change_bounds(net.z0[layer][pts, units], net.active[layer][pts, units],
                                                spec.pattern_eps)
        for sign, bnd in ((1.0, plo), (-1.0, -phi)):  # dz >= plo;  -dz >= -phi
            a, rlo = _relaxed(g, bnd, g_max, pts, z, sign)
            a_rows.append(a)
            r_lo.append(rlo)
            r_hi.append(np.full(rlo.size, np.inf))

    if n_layers > 1:  # the pattern of layer 0 on the editable rows, as rows on u
        pts, rr = np.divmod(np.arange(n_def), n_r)
        g = sp.csr_matrix((np.ones(n_def), (np.arange(n_def), u.ravel())), shape=(n_def, n))
        add_pattern(g, 0, dmax[0][pts, net.rows[rr]], pts, net.rows[rr])
    for layer in range(1, n_layers):
        width = spec.weights[layer].shape[0]
        pts, units = np.divmod(np.arange(n_pts * width), width)
        aff = lr.affine_rows(net, layer, pts, units, u, db, n)
        if layer == n_layers - 1:  # v = dz of the logits
            a_rows.append(sp.csr_matrix((np.ones(pts.size), (np.arange(pts.size), v.ravel())), shape=aff.shape)
                          - aff)
            r_lo.append(np.zeros(pts.size))
            r_hi.append(np.zeros(pts.size))
        else:
            add_pattern(aff, layer, dmax[layer][pts, units], pts, units)
    m_a, m_lo, m_pts = lr.margin_rows(v, None, spec.targets, net.z0[-1], spec.point_margins(), n)
    others = other_classes(spec.targets, n_cls).ravel()
    g_max = dmax[-1][m_pts, spec.targets[m_pts]] + dmax[-1][m_pts, others]
    a, rlo = _relaxed(m_a, m_lo, g_max, m_pts, z, 1.0)
    a_rows.append(a)
    r_lo.append(rlo)
    r_hi.append(np.full(rlo.size, np.inf))

    c = np.zeros(n)
    c[z[: spec.n_edit_points]] = -1.0
    integrality = np.zeros(n, dtype=bool)
    integrality[z] = True
    problem = Problem(c=c, A=sp.vstack(a_rows).tocsc(), row_lo=np.concatenate(r_lo), row_hi=np.concatenate(r_hi),
                      col_lo=lo, col_hi=hi, integrality=integrality, name="repair-max-fixed")

    def decode(x: np.ndarray):
        return x[dw], [x[b] for b in db]

    return problem, decode, z


def max_fixed_subset(spec: LPSpec, solver: str = "auto", options: SolveOptions | None = None) -> MaxFixedSolution:
    """Solve the MILP: the largest set of edit points a repair within the bound can fix while every preserve row
    holds (time limit: best incumbent). Preserve images enter lazily, in the rounds of lazy.py."""
    if spec.n_preserve:
        preserve = spec.preserve_only()
        out, _ = lazy_rounds(lambda active, _: _solve_milp(spec.with_preserve_points(active), solver, options),
                             lambda sol: nw.streamed_violations(preserve, sol[1], sol[2]), np.zeros(0, np.int64),
                             stop=lambda sol: sol[1] is None, objective=lambda sol: sol[0].claimed,
                             what="preserve images (max-fixed MILP)")
        out = out[0]
    else:
        out = _solve_milp(spec, solver, options)[0]
    n_edit = spec.inputs.shape[0]
    if out.fixed is not None:
        out.fixed, out.chosen = out.fixed[:n_edit], out.chosen[:n_edit]
        out.claimed = int(out.chosen.sum())
    return out


def _solve_milp(spec: LPSpec, solver: str, options: SolveOptions | None):
    """One MILP over the points of ``spec``: (MaxFixedSolution, dW, db) with dW/db None without a solution."""
    t0 = time.perf_counter()
    net = nw.original_network(spec)
    problem, decode, z = encode_max_fixed(spec, net)
    build = time.perf_counter() - t0
    log.info("max-fixed MILP: %d vars (%d binary), %d rows, %d nnz (built in %.2fs)",
             problem.n_vars, z.size, problem.n_rows, problem.nnz, build)
    res = solve(problem, solver=solver, options=options or SolveOptions())
    n_fixed_pres = spec.inputs.shape[0] - spec.n_edit_points  # preserve z are fixed at 1: not counted
    bound = None if res.mip_bound is None or not np.isfinite(res.mip_bound) else -float(res.mip_bound)
    out = MaxFixedSolution(res.status, None, None, 0, bound, res.mip_gap,
                           res.runtime, build, res.n_vars, res.n_rows, res.nnz, res.backend, res.backend_version,
                           int((res.iterations or {}).get("nodes", 0)), res.message)
    dW = db = None
    if res.x is not None:
        dW, db = decode(res.x)
        out.fixed = nw.points_fixed(net, dW, db)
        out.chosen = np.round(res.x[z]) > 0.5
        out.claimed = int(out.chosen[: spec.n_edit_points].sum())
        log.info("max-fixed MILP %s: %d points claimed, %d hold exactly, bound %s, gap %s (%d preserve images in)",
                 res.status.value, out.claimed, int(out.fixed[: spec.n_edit_points].sum()), out.bound, out.gap,
                 n_fixed_pres)
    return out, dW, db
