"""The restricted master LP of column generation (colgen.py): the fixed columns and rows, the working set
of dW columns, lazy pattern rows with elastic slacks, and the two phases' objectives."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp import rows as lr
from alexnet_repair.repair.lp.spec import LPSpec, objective_terms
from alexnet_repair.solvers import Problem


class Master:
    """The fixed part of the restricted LP; ``problem(E, lazy)`` adds the working set and lazy rows."""

    # Over 60 lines: the restricted master's fixed columns and rows, built in one pass over one layout.
    def __init__(self, spec: LPSpec, net: nw.Network, cscale: float = 1.0):
        self.spec, self.net = spec, net
        self.terms = terms = objective_terms(spec)
        n_pts, n_in = spec.inputs.shape
        n_edit = spec.n_edit_points
        L, n_r = net.n_layers, net.rows.size
        n_cls = spec.weights[-1].shape[0]
        # virtual columns: one free variable per quantity (no dW: its columns are generated)
        virtual = lr.repair_columns(net, with_dw=False)
        vc, vdb, vu, vv = virtual.layout, virtual.db, virtual.u, virtual.v
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
        r_def = lr.u_definition_rows(net, virtual, vc.n)
        n_def = r_def.shape[0]
        rows_v, lo_v, hi_v = [r_def], [np.zeros(n_def)], [np.zeros(n_def)]
        if L > 1:
            pts, units = np.divmod(np.arange(n_pts * n_cls), n_cls)
            aff = lr.affine_rows(net, L - 1, pts, units, vu, vdb, vc.n)
            eye = sp.csr_matrix((np.ones(pts.size), (np.arange(pts.size), vv.ravel())), shape=aff.shape)
            rows_v.append(eye - aff); lo_v.append(np.zeros(pts.size)); hi_v.append(np.zeros(pts.size))
        m_a, m_lo, _ = lr.margin_rows(vv, None, spec.targets, net.z0[-1], spec.point_margins(), vc.n)
        rows_v.append(m_a); lo_v.append(m_lo); hi_v.append(np.full(m_lo.size, np.inf))
        a_real = (sp.vstack(rows_v).tocsr() @ T).tocsr()
        n_before_marg = a_real.shape[0] - n_marg
        a_real = a_real + sp.csr_matrix((np.ones(n_marg), (n_before_marg + np.arange(n_marg), self.s)),
                                        shape=a_real.shape)
        rows, lo, hi = [a_real], lo_v, hi_v
        if terms.w_inf:  # |v| <= t and |db| <= t as  p + m - t <= 0
            pairs = [(p.ravel(), m.ravel()) for p, m in zip(dbp, dbm)]
            if split_v:  # edit points only: preserve points' outputs carry no weight
                pairs.append((vp[:n_edit].ravel(), vm[:n_edit].ravel()))
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
            self.c[vp[:n_edit]] = self.c[vm[:n_edit]] = terms.w_l1 * cscale
        if terms.w_inf:
            self.c[self.t] = terms.w_inf * cscale
        self.dbp, self.dbm, self.u, self.vu, self.vdb, self.vn = dbp, dbm, u, vu, vdb, vc.n
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


def split_solution(master: Master, x: np.ndarray, e: int):
    """(dW entries (E,), [db_l], u (N, |R|) or None, t) from a master solution."""
    nf = master.n_fixed
    dw = x[nf:nf + e] - x[nf + e:nf + 2 * e]
    db = [x[p] - x[m] for p, m in zip(master.dbp, master.dbm)]
    u = x[master.u] if master.u is not None else None
    t = x[master.t] if master.t is not None else np.inf
    return dw, db, u, t


