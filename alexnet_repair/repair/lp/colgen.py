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

from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp import rows as lr
from alexnet_repair.repair.lp.spec import LPSolution, LPSpec, objective_terms
from alexnet_repair.solvers import Problem, SolveOptions, Status, choose_backend, solve

log = logging.getLogger(__name__)

RC_TOL = 1e-9  # a column prices out when its reduced cost < -RC_TOL * (cost scale)
ROW_TOL = 1e-9  # a lazy row is violated when off by more than this
SLACK_TOL = 1e-9  # phase 1 calls the restricted master feasible at this total slack


class _Master:
    """The fixed part of the restricted LP; ``problem(E, lazy)`` adds the working set and lazy rows."""

    def __init__(self, spec: LPSpec, net: nw.Network, cscale: float = 1.0):
        self.spec, self.net = spec, net
        self.terms = terms = objective_terms(spec)
        n_pts, n_in = spec.inputs.shape
        L, n_r = net.n_layers, net.rows.size
        n_cls = spec.weights[-1].shape[0]
        # virtual columns: one free variable per quantity
        vc = lr.Layout()
        vdb = [vc.add("db0", (n_r,))] + [vc.add(f"db{l}", (spec.weights[l].shape[0],)) for l in range(1, L)]
        vu = vc.add("u", (n_pts, n_r))
        vv = np.full((n_pts, n_cls), -1)
        if L == 1:
            vv[:, net.rows] = vu
        else:
            vv[:, :] = vc.add("v", (n_pts, n_cls))
        # real columns
        rc = lr.Layout()
        dbp = [rc.add(f"db{l}+", b.shape) for l, b in enumerate(vdb)]
        dbm = [rc.add(f"db{l}-", b.shape) for l, b in enumerate(vdb)]
        split_v = terms.outputs
        v_cols = vu if L == 1 else vv
        vp = rc.add("v+", v_cols.shape)
        vm = rc.add("v-", v_cols.shape) if split_v else None
        u = rc.add("u", (n_pts, n_r)) if L > 1 else None
        self.t = rc.add("t", (1,))[0] if terms.w_inf else None
        n_marg = n_pts * (n_cls - 1)
        self.s = rc.add("s", (n_marg,))
        self.n_fixed = rc.n
        # T: virtual -> real (x_virtual = T x_real)
        ti, tj, tv = [], [], []
        for virt, p, m in zip(vdb, dbp, dbm):
            ti += [virt, virt]; tj += [p, m]; tv += [np.ones(p.size), -np.ones(m.size)]
        ti.append(v_cols); tj.append(vp); tv.append(np.ones(vp.size))
        if split_v:
            ti.append(v_cols); tj.append(vm); tv.append(-np.ones(vm.size))
        if L > 1:
            ti.append(vu); tj.append(u); tv.append(np.ones(u.size))
        T = sp.csr_matrix((np.concatenate(tv), (np.concatenate([a.ravel() for a in ti]),
                                                np.concatenate([a.ravel() for a in tj]))), shape=(vc.n, rc.n))
        self.T = T
        # rows in virtual space
        n_def = n_pts * n_r
        r_def = sp.csr_matrix((np.r_[np.ones(n_def), -np.ones(n_def)],
                               (np.r_[np.arange(n_def), np.arange(n_def)], np.r_[vu.ravel(), np.tile(vdb[0], n_pts)])),
                              shape=(n_def, vc.n))
        rows_v, lo_v, hi_v = [r_def], [np.zeros(n_def)], [np.zeros(n_def)]
        if L > 1:
            pts, units = np.divmod(np.arange(n_pts * n_cls), n_cls)
            aff = lr.affine_rows(net, L - 1, pts, units, vu, vdb, vc.n)
            eye = sp.csr_matrix((np.ones(pts.size), (np.arange(pts.size), vv.ravel())), shape=aff.shape)
            rows_v.append(eye - aff); lo_v.append(np.zeros(pts.size)); hi_v.append(np.zeros(pts.size))
        m_a, m_lo, self.margin_point = lr.margin_rows(vv, None, spec.targets, net.z0[-1],
                                                          spec.margin + spec.margin_slack, vc.n)
        rows_v.append(m_a); lo_v.append(m_lo); hi_v.append(np.full(m_lo.size, np.inf))
        a_real = (sp.vstack(rows_v).tocsr() @ T).tocsr()
        n_before_marg = a_real.shape[0] - n_marg
        a_real = a_real + sp.csr_matrix((np.ones(n_marg), (n_before_marg + np.arange(n_marg), self.s)),
                                        shape=a_real.shape)
        rows, lo, hi = [a_real], lo_v, hi_v
        if terms.w_inf:  # |v| <= t and |db| <= t as  p + m - t <= 0
            pairs = [(p.ravel(), m.ravel()) for p, m in zip(dbp, dbm)]
            if split_v:
                pairs.append((vp.ravel(), vm.ravel()))
            for p, m in pairs:
                k = p.size
                ar = np.arange(k)
                rows.append(sp.csr_matrix((np.r_[np.ones(2 * k), -np.ones(k)], (np.r_[ar, ar, ar],
                                           np.r_[p, m, np.full(k, self.t)])), shape=(k, rc.n)))
                lo.append(np.full(k, -np.inf)); hi.append(np.zeros(k))
        self.A_fixed = sp.vstack(rows).tocsr()
        self.row_lo, self.row_hi = np.concatenate(lo), np.concatenate(hi)
        self.n_def = n_def
        # columns
        B = spec.bound
        self.col_lo = np.zeros(rc.n)
        self.col_hi = np.full(rc.n, np.inf)
        for p, m in zip(dbp, dbm):
            self.col_hi[p], self.col_hi[m] = B, B
        if not split_v:
            self.col_lo[vp] = -np.inf
        if L > 1:
            plo, phi = nw.pattern_change_bounds(net.z0[0][:, net.rows], net.active[0][:, net.rows], spec.pattern_eps)
            self.col_lo[u], self.col_hi[u] = plo, phi
        self.cscale = cscale
        self.c = np.zeros(rc.n)
        for p, m in zip(dbp, dbm):
            self.c[p] = self.c[m] = terms.w_l1 * cscale
        if split_v:
            self.c[vp] = self.c[vm] = terms.w_l1 * cscale
        if terms.w_inf:
            self.c[self.t] = terms.w_inf * cscale
        self.dbp, self.dbm, self.u, self.vu, self.vdb, self.vn = dbp, dbm, u, vu, vdb, vc.n
        self.blocks_v = [vp] + ([vm] if split_v else [])
        self.inputs_t = sp.csr_matrix(spec.inputs.T)
        self.lazy_rows: list[sp.csr_matrix] = []  # rows over the fixed columns (pattern rows)
        self.lazy_lo: list[np.ndarray] = []
        self.lazy_hi: list[np.ndarray] = []
        self.lazy_keys: set = set()

    def add_pattern_rows(self, layer: int, pts: np.ndarray, units: np.ndarray) -> None:
        keys = [(layer, int(i), int(j)) for i, j in zip(pts, units)]
        new = np.array([k not in self.lazy_keys for k in keys], dtype=bool)
        if not new.any():
            return
        pts, units = pts[new], units[new]
        self.lazy_keys.update(k for k, f in zip(keys, new) if f)
        aff = lr.affine_rows(self.net, layer, pts, units, self.vu, self.vdb, self.vn) @ self.T
        plo, phi = nw.pattern_change_bounds(self.net.z0[layer][pts, units], self.net.active[layer][pts, units],
                                                self.spec.pattern_eps)
        self.lazy_rows.append(aff.tocsr()); self.lazy_lo.append(plo); self.lazy_hi.append(phi)

    def problem(self, r_sel: np.ndarray, j_sel: np.ndarray, epi: np.ndarray, phase1: bool) -> Problem:
        """LP with working set E = (r_sel, j_sel) and |dW_e| <= t rows for the entries ``epi``.

        Columns: the fixed ones, dW+ (E), dW- (E), then slack pairs of the lazy pattern rows. Phase 1
        minimises the slacks alone; phase 2 fixes them at 0 and minimises the real objective.
        """
        e = r_sel.size
        wb = lr.weight_block(self.inputs_t, r_sel, j_sel, self.net.rows.size)
        n_rows_fixed = self.A_fixed.shape[0]
        wb = sp.vstack([wb, sp.csc_matrix((n_rows_fixed - wb.shape[0], e))])
        parts = [self.A_fixed] + self.lazy_rows
        fixed = sp.vstack(parts).tocsc() if self.lazy_rows else self.A_fixed.tocsc()
        n_lazy = fixed.shape[0] - n_rows_fixed
        wb = sp.vstack([wb, sp.csc_matrix((n_lazy, e))]).tocsc()
        ar = np.arange(n_lazy)
        eye = sp.csc_matrix((np.ones(n_lazy), (n_rows_fixed + ar, ar)), shape=(fixed.shape[0], n_lazy))
        A = sp.hstack([fixed, wb, -wb, eye, -eye]).tocsc()
        row_lo = np.concatenate([self.row_lo] + self.lazy_lo)
        row_hi = np.concatenate([self.row_hi] + self.lazy_hi)
        if epi.size and self.t is not None:
            k = epi.size
            ar = np.arange(k)
            epi_rows = sp.csr_matrix((np.r_[np.ones(2 * k), -np.ones(k)],
                                      (np.r_[ar, ar, ar], np.r_[self.n_fixed + epi, self.n_fixed + e + epi,
                                                                np.full(k, self.t)])), shape=(k, A.shape[1]))
            A = sp.vstack([A, epi_rows]).tocsc()
            row_lo = np.r_[row_lo, np.full(k, -np.inf)]
            row_hi = np.r_[row_hi, np.zeros(k)]
        B = self.spec.bound
        col_hi = np.r_[self.col_hi, np.full(2 * e, B), np.full(2 * n_lazy, np.inf if phase1 else 0.0)]
        if phase1:
            c = np.zeros(A.shape[1])
            c[self.s] = c[self.n_fixed + 2 * e:] = 1.0
        else:
            c = np.r_[self.c, np.full(2 * e, self.terms.w_l1 * self.cscale), np.zeros(2 * n_lazy)]
            col_hi[self.s] = 0.0
        col_lo = np.r_[self.col_lo, np.zeros(2 * e + 2 * n_lazy)]
        return Problem(c=c, A=A, row_lo=row_lo, row_hi=row_hi, col_lo=col_lo, col_hi=col_hi,
                       name=f"repair-colgen-phase{1 if phase1 else 2}")

    @property
    def n_lazy(self) -> int:
        """Lazy pattern rows so far (each has a pair of elastic slack columns)."""
        return sum(lo.size for lo in self.lazy_lo)

    def slack(self, x: np.ndarray, e: int) -> float:
        """Total elastic slack of a master solution with |E| = e."""
        return float(x[self.s].sum() + x[self.n_fixed + 2 * e:self.n_fixed + 2 * e + 2 * self.n_lazy].sum())


def _split(master: _Master, x: np.ndarray, e: int):
    """(dW entries (E,), [db_l], u (N, |R|) or None, t) from a master solution."""
    nf = master.n_fixed
    dw = x[nf:nf + e] - x[nf + e:nf + 2 * e]
    db = [x[p] - x[m] for p, m in zip(master.dbp, master.dbm)]
    u = x[master.u] if master.u is not None else None
    t = x[master.t] if master.t is not None else np.inf
    return dw, db, u, t


def _resolve_backend(solver: str, n_vars: int, n_rows: int) -> str:
    """One backend for all rounds: "auto" is decided on the size of the unrestricted master."""
    if solver != "auto":
        return solver
    proxy = Problem(c=np.zeros(n_vars), A=sp.csc_matrix((n_rows, n_vars)), row_lo=np.zeros(n_rows),
                    row_hi=np.zeros(n_rows), col_lo=np.zeros(n_vars), col_hi=np.zeros(n_vars))
    return choose_backend(proxy, "auto")


def solve_colgen(spec: LPSpec, net: nw.Network, solver: str = "auto", options: SolveOptions | None = None,
                 per_round: int | None = None) -> LPSolution:
    """Exact optimum of the repair LP by two-phase column generation over dW (see module doc)."""
    options = options or SolveOptions()
    t_start = time.perf_counter()
    deadline = None if options.time_limit is None else t_start + options.time_limit
    terms = objective_terms(spec)
    cscale = 1.0 / terms.w_l1 if terms.w_l1 else 1.0  # solve with O(1) costs (simplex converges faster)
    scale = max(terms.w_inf, terms.w_l1 * terms.length) * cscale  # scaled objective ~ O(scale)
    master = _Master(spec, net, cscale)
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
    while True:
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0:
            sol.status, sol.message = Status.TIME_LIMIT, "time limit reached during column generation"
            break
        tb = time.perf_counter()
        prob = master.problem(r_sel, j_sel, epi, phase1)
        sol.build_time += time.perf_counter() - tb
        opts = SolveOptions(**{**vars(options), "time_limit": remaining})
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
        dw, db, u, t = _split(master, x, e)
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
