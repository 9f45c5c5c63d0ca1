"""The repair LP in the structured IPM's standard form ``min c@x, op x = b, 0 <= x <= ub`` (see certified.py
for what is relaxed and how the point is certified)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp import rows as lr
from alexnet_repair.repair.lp.ipm.normal_equations import BlockOperator
from alexnet_repair.repair.lp.spec import LPSpec, objective_terms, other_classes

TIGHTEN = 1e-8  # margin rows / pattern bounds tightened inside the IPM, so the exact recomputation passes


@dataclass
class IpmLP:
    """``min c@x, op x = b, 0 <= x <= ub``; b_exact is b without the TIGHTEN shift of the margin rows."""

    op: BlockOperator
    c: np.ndarray
    b: np.ndarray
    b_exact: np.ndarray
    ub: np.ndarray
    decode: Callable  # x -> (dW (|R|, in_k), [db_0, ...])
    column_upper: Callable  # (scaled objective bound, or None: rows alone) -> finite upper bound of every column
    u_cols: np.ndarray  # columns whose exact-LP lower bound is -TIGHTEN (shifted pattern bounds)
    cscale: float  # c = cscale * (the LP's objective)
    col_keys: np.ndarray  # (n,) what each column is, the same in every round's LP (see _keys): for warm starts
    row_keys: np.ndarray  # (m,) what each row is


# Over 60 lines: one standard-form LP; its column layout, rows and bounds must stay in step.
def build_ipm_lp(spec: LPSpec, net: nw.Network, keep: np.ndarray | None = None, tighten: float = TIGHTEN) -> IpmLP:
    """The repair LP in the IPM's standard form, the |dW| <= t and |db_k| <= t rows included (Ew rows).

    keep: indices of the margin rows (numbered as lr.margin_rows numbers them) to include;
    None = all. Fewer rows give a relaxation, which the certificate accounts for."""
    terms = objective_terms(spec)
    cscale = 1.0 / terms.w_l1
    n_pts = spec.inputs.shape[0]
    n_edit = spec.n_edit_points  # points n_edit.. are preserve points: no objective weight, no e/t rows
    n_r, n_cls, L = net.rows.size, spec.weights[-1].shape[0], net.n_layers
    # An input that is 0 at every point (a ReLU unit dead on all of them, 18-33% on the real models) leaves its
    # dW column out of every row: 0 at the optimum, so the column is left out of the LP (decode puts the 0 back).
    live = net.live_inputs  # of every point, not only this round's: the dW columns keep their keys across rounds
    n_in = live.size
    n_w = 2 * n_r * (n_in + 1)
    keep = np.arange(n_pts * (n_cls - 1)) if keep is None else np.asarray(keep)
    n_marg = keep.size
    cols = lr.Layout()
    cv = n_r if L == 1 else n_cls
    member = _output_members(spec, net, keep) if L == 1 else np.ones((n_pts, cv), dtype=bool)
    vp, vm = np.full((n_pts, cv), -1), np.full((n_pts, cv), -1)  # v of (point, output), -1: not in this LP
    n_mem = int(member.sum())
    vp[member], vm[member] = cols.add("v+", (n_mem,)), cols.add("v-", (n_mem,))
    if L == 2:
        xu = cols.add("u", (n_pts, n_r))
        dbp, dbm = cols.add("db1+", (n_cls,)), cols.add("db1-", (n_cls,))
    surplus = cols.add("s", (n_marg,))
    if terms.w_inf:
        ev = cols.add("e_v", (n_edit, cv))
        edb = cols.add("e_db", (n_cls,)) if L == 2 else np.zeros(0, dtype=np.int64)
        t = cols.add("t", (1,))[0]
        ew = cols.add("e_w", (n_r * (n_in + 1),))  # slack of |dW_rj| <= t (and |db_k,r| <= t): the exact LP
    parts, b_parts = [], []
    n_def = n_mem if L == 1 else n_pts * n_r
    ar = np.arange(n_def)
    u_cols = np.zeros(0, dtype=np.int64)
    if L == 1:  # D rows: v+ - v- - a.dW - db = 0, for each (point, output) in the LP
        parts.append(sp.csr_matrix((np.r_[np.ones(n_def), -np.ones(n_def)], (np.r_[ar, ar], np.r_[vp[member], vm[member]])),
                                   shape=(n_def, cols.n)))
        b_parts.append(np.zeros(n_def))
        off = sign = None
    else:  # D rows: u = off + sign * x_u;  V rows: v+ - v- - C_u u - db1 = 0
        lo, hi = nw.pattern_change_bounds(net.z0[0][:, net.rows], net.active[0][:, net.rows], spec.pattern_eps)
        act = np.isfinite(lo)
        sign = np.where(act, 1.0, -1.0).ravel()
        off = np.where(act, lo + tighten, hi - tighten).ravel()
        parts.append(sp.csr_matrix((sign, (ar, xu.ravel())), shape=(n_def, cols.n)))
        b_parts.append(-off)
        pts, units = np.divmod(np.arange(n_pts * n_cls), n_cls)
        coef_u, _ = nw.sensitivity(net, 1, pts, units)  # (N*C, |R|)
        rr, cc = np.nonzero(coef_u)
        k = pts.size
        kr = np.arange(k)
        sign2, off2 = sign.reshape(n_pts, n_r), off.reshape(n_pts, n_r)
        vrows = sp.csr_matrix((np.r_[np.ones(k), -np.ones(k), -np.ones(k), np.ones(k), -coef_u[rr, cc] * sign2[pts[rr], cc]],
                               (np.r_[kr, kr, kr, kr, rr], np.r_[vp.ravel(), vm.ravel(), dbp[units], dbm[units], xu[pts[rr], cc]])),
                              shape=(k, cols.n))
        parts.append(vrows)
        b_parts.append((coef_u * off2[pts]).sum(1))
        u_cols = n_w + xu.ravel()
    v_cols = np.full((n_pts, n_cls), -1)
    v_neg = np.full((n_pts, n_cls), -1)
    if L == 1:
        v_cols[:, net.rows], v_neg[:, net.rows] = vp, vm
    else:
        v_cols, v_neg = vp, vm
    m_a, m_lo, m_pts = lr.margin_rows(v_cols, v_neg, spec.targets, net.z0[-1], spec.point_margins(), cols.n)
    m_a, m_lo, m_pts = m_a[keep], m_lo[keep], m_pts[keep]
    m_a = m_a - sp.csr_matrix((np.ones(n_marg), (np.arange(n_marg), surplus)), shape=m_a.shape)
    parts.append(m_a)
    b_parts.append(m_lo)
    n_before_e = sum(p.shape[0] for p in parts)
    if terms.w_inf:  # p + m + e - t = 0 for every v (and db_1)
        pp = [(vp[:n_edit].ravel(), vm[:n_edit].ravel(), ev.ravel())] + ([(dbp, dbm, edb)] if L == 2 else [])
        for p, m, e in pp:
            k = p.size
            kr = np.arange(k)
            parts.append(sp.csr_matrix((np.r_[np.ones(3 * k), -np.ones(k)], (np.r_[kr, kr, kr, kr], np.r_[p, m, e, np.full(k, t)])),
                                       shape=(k, cols.n)))
            b_parts.append(np.zeros(k))
    if terms.w_inf:  # Ew rows, last: W+ + W- (implicit, in BlockOperator) + e_w - t = 0
        k = ew.size
        parts.append(sp.csr_matrix((np.r_[np.ones(k), -np.ones(k)], (np.r_[np.arange(k), np.arange(k)],
                                   np.r_[ew, np.full(k, t)])), shape=(k, cols.n)))
        b_parts.append(np.zeros(k))
    ax = sp.vstack(parts).tocsc()
    col_keys, row_keys = _keys(cols, member, keep, n_w, [p.shape[0] for p in parts], L)
    b_exact = np.concatenate(b_parts)
    e_mask = np.zeros(ax.shape[0], dtype=bool)
    e_mask[n_before_e:] = True
    if terms.w_inf:
        e_mask[ax.shape[0] - ew.size:] = False  # the Ew rows are BlockOperator's own block
    marg_rows = np.arange(n_before_e - n_marg, n_before_e)
    b = b_exact.copy()
    b[marg_rows] += tighten
    c = np.zeros(cols.n)
    c[vp[:n_edit]], c[vm[:n_edit]] = 1.0, 1.0
    ub = np.full(cols.n, np.inf)
    reach = spec.bound * (net.input_l1 + 1.0)  # |u_i| <= B (|a_i|_1 + 1)
    if L == 1:  # |v_i| <= reach_i: a valid bound that keeps the weightless preserve v+/v- finite
        v_max = np.repeat(reach[:, None], cv, 1)
    else:
        v_max = (np.abs(coef_u) * reach[pts][:, None]).sum(1).reshape(n_pts, n_cls) + spec.bound
    pm = member.copy()
    pm[:n_edit] = False
    ub[vp[pm]], ub[vm[pm]] = v_max[pm], v_max[pm]
    if L == 2:
        c[dbp], c[dbm] = 1.0, 1.0
        ub[dbp], ub[dbm] = spec.bound, spec.bound
    if terms.w_inf:
        c[t] = terms.w_inf * cscale
    in_lp = np.flatnonzero(member.any(1))  # points with a D row (a preserve point without rows in this LP has none)
    d_pt, d_r = np.nonzero(member[in_lp])
    a_aug = np.hstack([spec.inputs[np.ix_(in_lp, live)], np.ones((in_lp.size, 1))])  # db_k[r]: a weight on input 1
    op = BlockOperator(a_aug, n_r, ax, t if terms.w_inf else None, e_mask, weight_epigraph=bool(terms.w_inf),
                       d_pairs=(d_pt, d_r) if L == 1 else None)
    cost = np.r_[np.ones(n_w), c]
    upper = np.r_[np.full(n_w, spec.bound), ub]

    def decode(x):
        w = np.clip(x[: n_w // 2] - x[n_w // 2: n_w], -spec.bound, spec.bound).reshape(n_r, n_in + 1)
        db = [w[:, -1].copy()]
        if L == 2:
            db.append(np.clip(x[n_w + dbp] - x[n_w + dbm], -spec.bound, spec.bound))
        dW = np.zeros((n_r, spec.inputs.shape[1]))
        dW[:, live] = w[:, :-1]
        return dW, db

    def column_upper(ub_s=None):
        """A finite upper bound of every column that some optimal (ub_s: scaled objective <= ub_s) or, for
        ub_s None, some feasible solution meets: |v| <= v_max, t <= the largest |change|, slacks <= what they
        close."""
        up = upper.copy()
        xs = up[n_w:]
        vmax = np.inf if ub_s is None else ub_s
        if terms.w_inf:
            xs[t] = max(float(v_max.max(initial=0.0)), spec.bound) if ub_s is None else ub_s / c[t]
            vmax = min(vmax, xs[t]) if ub_s is not None else vmax
            xs[ev], xs[edb], xs[ew] = xs[t], xs[t], xs[t]
        v_cap = np.minimum(v_max, vmax)
        v_cap[n_edit:] = v_max[n_edit:]  # preserve points' v are not bounded by the objective
        xs[vp[member]], xs[vm[member]] = v_cap[member], v_cap[member]
        xs[surplus] = np.maximum(2 * v_cap.max(1)[m_pts] - b_exact[marg_rows], 0.0)
        if L == 2:
            xs[xu.ravel()] = np.abs(off) + np.repeat(reach, n_r)
        return up

    return IpmLP(op, cost, b, b_exact, upper, decode, column_upper, u_cols, cscale, col_keys, row_keys)


COL_KINDS = {"v+": 1, "v-": 2, "u": 3, "db1+": 4, "db1-": 5, "s": 6, "e_v": 7, "e_db": 8, "t": 9, "e_w": 10}
ROW_D, ROW_MARGIN = 1, 3  # kinds of the D rows and the margin rows in row_keys
KIND_SHIFT = 40  # a key is kind << KIND_SHIFT | index


def key(kind, index):
    return (np.asarray(kind, dtype=np.int64) << KIND_SHIFT) + index


def _keys(cols: lr.Layout, member: np.ndarray, keep: np.ndarray, n_w: int, row_counts: list[int], n_layers: int):
    """Integer keys (``key``) of the columns and rows, where the index names the same variable or row
    in every round: a logit change and its D row (last layer) by (point, output), a margin row and its surplus by
    the row's number, the rest by position. The dW columns are 0..n_w-1; column kinds are COL_KINDS, row kinds
    ROW_D, ROW_MARGIN, the rest 10 + their part's place."""
    col = np.empty(cols.n, dtype=np.int64)
    for name, idx in cols.blocks.items():
        sub = np.flatnonzero(member) if name in ("v+", "v-") else keep if name == "s" else np.arange(idx.size)
        col[idx.ravel()] = key(COL_KINDS[name], sub)
    rows = []
    margin_part = n_layers  # row parts: D, [V (hidden layer)], margin, [E...], [Ew]
    for part, count in enumerate(row_counts):
        kind = ROW_D if part == 0 else ROW_MARGIN if part == margin_part else 10 + part
        sub = keep if part == margin_part else np.flatnonzero(member) if part == 0 and n_layers == 1 else np.arange(count)
        rows.append(key(kind, sub))
    return np.r_[np.arange(n_w), col], np.concatenate(rows)


def _output_members(spec: LPSpec, net: nw.Network, keep: np.ndarray) -> np.ndarray:
    """(N, |R|) which logit changes v[i, r] the last-layer LP holds: every one of an edit point (the objective
    counts them); of a preserve point only its label's and those of the classes in its kept margin rows (its
    other logit changes appear in no row, so they and their D rows are left out)."""
    n_pts, n_cls = spec.inputs.shape[0], spec.weights[-1].shape[0]
    member = np.zeros((n_pts, n_cls), dtype=bool)
    member[: spec.n_edit_points] = True
    pts, k = np.divmod(keep, n_cls - 1)
    pts, k = pts[pts >= spec.n_edit_points], k[pts >= spec.n_edit_points]
    member[pts, spec.targets[pts]] = True
    member[pts, other_classes(spec.targets, n_cls)[pts, k]] = True
    return member[:, net.rows]
