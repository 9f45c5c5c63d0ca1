"""Reusable LP row blocks and the column layout of the repair LP (pure numpy / scipy.sparse).

Everything here takes plain index arrays for the LP columns, so the straightforward encoding,
the column-generation encoding and the max-fixed MILP share the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from alexnet_repair.repair.lp.network import Network, sensitivity
from alexnet_repair.repair.lp.spec import other_classes


class Layout:
    """Named blocks of LP columns (or rows): ``add(name, shape)`` -> index array of that shape."""

    def __init__(self) -> None:
        self.blocks: dict[str, np.ndarray] = {}
        self.n = 0

    def add(self, name: str, shape) -> np.ndarray:
        size = int(np.prod(shape))
        idx = np.arange(self.n, self.n + size).reshape(shape)
        self.blocks[name] = idx
        self.n += size
        return idx

    def __getitem__(self, name: str) -> np.ndarray:
        return self.blocks[name]

    def __contains__(self, name: str) -> bool:
        return name in self.blocks


@dataclass
class RepairColumns:
    """The repair LP's column layout, shared by every encoding: index arrays into one Layout.

    dw (|R|, in_k) or None (column generation adds dW columns itself); db[l] (out_l,);
    u (N, |R|) the pre-activation changes of the edited layer; v (N, C) the logit changes
    (-1 where a logit cannot change: last layer, rows outside R; there v aliases u).
    """

    layout: Layout
    dw: np.ndarray | None
    db: list[np.ndarray]
    u: np.ndarray
    v: np.ndarray


def repair_columns(net: Network, layout: Layout | None = None, with_dw: bool = True) -> RepairColumns:
    """Add dW (optional), db_0..db_{L-1}, u and v (L > 1) to ``layout`` in that order."""
    spec, layout = net.spec, layout or Layout()
    n_pts, n_in = spec.inputs.shape
    n_r, n_cls = net.rows.size, spec.weights[-1].shape[0]
    dw = layout.add("dW", (n_r, n_in)) if with_dw else None
    db = [layout.add("db0", (n_r,))] + [layout.add(f"db{l}", (spec.weights[l].shape[0],))
                                         for l in range(1, net.n_layers)]
    u = layout.add("u", (n_pts, n_r))
    v = np.full((n_pts, n_cls), -1)
    if net.n_layers == 1:
        v[:, net.rows] = u
    else:
        v[:] = layout.add("v", (n_pts, n_cls))
    return RepairColumns(layout, dw, db, u, v)


def u_definition_rows(net: Network, cols: RepairColumns, n_cols: int) -> sp.csr_matrix:
    """Rows ``u[i, r] - sum_j a_ij dW[r, j] - db_0[r] = 0`` (N * |R| of them, row i * |R| + r); the dW part
    only when ``cols.dw`` is set."""
    n_pts, n_in = net.spec.inputs.shape
    n_r = net.rows.size
    n_def = n_pts * n_r
    ar = np.arange(n_def)
    rows = sp.csr_matrix((np.r_[np.ones(n_def), -np.ones(n_def)], (np.r_[ar, ar], np.r_[cols.u.ravel(),
                         np.tile(cols.db[0], n_pts)])), shape=(n_def, n_cols))
    if cols.dw is not None:
        r_sel, j_sel = np.divmod(np.arange(n_r * n_in), n_in)
        a_dw = weight_block(sp.csr_matrix(net.spec.inputs.T), r_sel, j_sel, n_r)  # columns dW in row-major order
        rows = rows + sp.hstack([sp.csc_matrix((n_def, cols.dw.ravel()[0])), a_dw,
                                 sp.csc_matrix((n_def, n_cols - cols.dw.ravel()[0] - a_dw.shape[1]))]).tocsr()
    return rows


def affine_rows(net: Network, layer: int, points, units, u_idx, db_idx, n_cols: int) -> sp.csr_matrix:
    """Sparse rows (n, n_cols) of dz_layer[points, units] as a function of the LP columns.

    u_idx: (N, |R|) column indices of u; db_idx[l]: (out_l,) column indices of db_l.
    """
    points = np.asarray(points)
    units = np.asarray(units)
    n = points.size
    coef_u, coef_db = sensitivity(net, layer, points, units)
    parts_r, parts_c, parts_v = [], [], []

    def put(coef, cols):  # coef (n, k), cols (n, k)
        r, c = np.nonzero(coef)
        parts_r.append(r)
        parts_c.append(cols[r, c])
        parts_v.append(coef[r, c])

    put(coef_u, u_idx[points])
    for l, coef in coef_db.items():
        put(coef, np.broadcast_to(db_idx[l], coef.shape))
    parts_r.append(np.arange(n))
    parts_c.append(db_idx[layer][units])
    parts_v.append(np.ones(n))
    return sp.csr_matrix(
        (np.concatenate(parts_v), (np.concatenate(parts_r), np.concatenate(parts_c))), shape=(n, n_cols)
    )


def weight_block(inputs_t: sp.csr_matrix, r_sel: np.ndarray, j_sel: np.ndarray, n_rows_r: int) -> sp.csc_matrix:
    """Columns for the weight changes dW[r_sel[e], j_sel[e]] (E of them) in the u-definition
    rows ``u[i, r] - sum_j a_ij dW[r, j] - db_0[r] = 0`` (row index i * |R| + r).

    inputs_t: (in_k, N) CSR of the transposed inputs. Returns (N * |R|, E) CSC with -a_ij.
    """
    starts = inputs_t.indptr[j_sel]
    counts = inputs_t.indptr[j_sel + 1] - starts
    total = int(counts.sum())
    offs = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total)
    pts = inputs_t.indices[offs]
    rows = pts * n_rows_r + np.repeat(r_sel, counts)
    cols = np.repeat(np.arange(len(j_sel)), counts)
    n = inputs_t.shape[1]
    return sp.csc_matrix((-inputs_t.data[offs], (rows, cols)), shape=(n * n_rows_r, len(j_sel)))


def margin_rows(v_cols: np.ndarray, v_sign_cols: np.ndarray | None, targets: np.ndarray, y0: np.ndarray,
                margin: float, n_cols: int):
    """Margin rows ``v[i, t_i] - v[i, c] >= margin - (y0[i, t_i] - y0[i, c])`` for c != t_i.

    v_cols: (N, C) column of each logit change, -1 where the change is fixed to 0.
    v_sign_cols: optional (N, C) second column entering with coefficient -1 (split v = v+ - v-).
    Returns (A csr (N*(C-1), n_cols), lo (N*(C-1),), point_of_row (N*(C-1),)); row upper = +inf.
    A MILP "max fixed" mode relaxes the rows of point i with ``+ M (1 - z_i)``.
    """
    n, c = y0.shape
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), (n,))  # a scalar, or one margin per point
    others = other_classes(targets, c)  # (N, C-1)
    pts = np.repeat(np.arange(n), c - 1)
    tgt = np.repeat(targets, c - 1)
    oth = others.ravel()
    lo = margin[pts] - (y0[pts, tgt] - y0[pts, oth])
    rr, cc, vv = [], [], []
    row = np.arange(pts.size)
    for cols, sgn in ((v_cols, 1.0), (v_sign_cols, -1.0)):
        if cols is None:
            continue
        for cls, s in ((tgt, sgn), (oth, -sgn)):
            col = cols[pts, cls]
            keep = col >= 0
            rr.append(row[keep])
            cc.append(col[keep])
            vv.append(np.full(keep.sum(), s))
    a = sp.csr_matrix((np.concatenate(vv), (np.concatenate(rr), np.concatenate(cc))), shape=(pts.size, n_cols))
    return a, lo, pts
