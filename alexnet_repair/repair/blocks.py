"""Network algebra and reusable LP row blocks of the repair LP (pure numpy / scipy.sparse).

Notation (ARCHITECTURE.md, "The repair LP"): the edited layers are k..m, here numbered
locally l = 0..L-1 (l = 0 is the edited layer k, l = L-1 the logits). ``R`` = editable rows
of layer k. Per edit point i:

* ``u_i`` (|R|,) = change of the pre-activation of layer k on rows R = dW a_i + db_0[R];
* with the ReLU patterns fixed to the original network's, the change of every later
  pre-activation is affine in (u_i, db_1, ..., db_l):
  dz_l,i = C_l,i u_i + sum_{l' <= l} D_l,l',i db_l'   (``sensitivity``);
* ``v_i`` (C,) = dz_{L-1},i = change of the logits.

Everything here takes plain index arrays for the LP columns, so the straightforward
encoding, the column-generation encoding and a MILP built on top share the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from alexnet_repair.repair.lp import LPSpec


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
class Network:
    """The original network at the N edit points, float64.

    z0[l]: (N, out_l) pre-activations of local layer l (z0[-1] = logits);
    active[l]: bool (N, out_l), ReLU after layer l active (z0 > 0), l = 0..L-2;
    rows: sorted editable rows R of layer 0.
    """

    spec: "LPSpec"
    rows: np.ndarray
    z0: list[np.ndarray]
    active: list[np.ndarray]

    @property
    def n_layers(self) -> int:
        return len(self.spec.weights)


def original_network(spec: "LPSpec") -> Network:
    a = np.asarray(spec.inputs, dtype=np.float64)
    z0, active = [], []
    for l, (w, b) in enumerate(zip(spec.weights, spec.biases)):
        z = a @ w.T + b
        z0.append(z)
        if l < len(spec.weights) - 1:
            active.append(z > 0)
            a = np.maximum(z, 0.0)
    rows = np.arange(spec.weights[0].shape[0]) if spec.rows is None else np.asarray(spec.rows)
    return Network(spec, rows, z0, active)


def pattern_change_bounds(z0: np.ndarray, active: np.ndarray, eps: float):
    """Bounds (lo, hi) on the change dz that keep the pattern: active units stay >= min(eps, z0),
    inactive units stay <= max(-eps, z0) (the original point dz = 0 is always allowed)."""
    lo = np.where(active, np.minimum(eps, z0) - z0, -np.inf)
    hi = np.where(active, np.inf, np.maximum(-eps, z0) - z0)
    return lo, hi


def sensitivity(net: Network, layer: int, points: np.ndarray, units: np.ndarray):
    """Coefficients of dz_layer[points, units] (n entries) in the LP variables.

    Returns (coef_u (n, |R|), coef_db) with coef_db[l] (n, out_l) for 1 <= l < layer
    (the own bias db_layer enters with coefficient 1 on its unit). ``layer`` >= 1.
    Cost: n x sum_l out_l x out_{l-1} flops; use it on row subsets for wide layers.
    """
    w = net.spec.weights
    g = w[layer][units]  # d z_layer / d h_{layer-1}: (n, out_{layer-1})
    coef_db = {}
    for l in range(layer - 1, -1, -1):
        g = g * net.active[l][points]  # d z_layer / d z_l
        if l == 0:
            return g[:, net.rows], coef_db
        coef_db[l] = g
        g = g @ w[l]
    raise AssertionError("unreachable")


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


def propagate(net: Network, u: np.ndarray, dbs: list[np.ndarray]) -> list[np.ndarray]:
    """Exact changes dz_l (N, out_l), l = 1..L-1, of the pattern-fixed network for values
    u (N, |R|) and dbs[l] (out_l,) (dbs[0] unused). Returns [dz_1, ..., dz_{L-1}]."""
    w = net.spec.weights
    h = np.zeros((u.shape[0], w[0].shape[0]))
    h[:, net.rows] = u * net.active[0][:, net.rows]
    out = []
    for l in range(1, net.n_layers):
        dz = h @ w[l].T + dbs[l]
        out.append(dz)
        if l < net.n_layers - 1:
            h = dz * net.active[l]
    return out


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
    others = np.array([[j for j in range(c) if j != t] for t in range(c)])[targets]  # (N, C-1)
    pts = np.repeat(np.arange(n), c - 1)
    tgt = np.repeat(targets, c - 1)
    oth = others.ravel()
    lo = margin - (y0[pts, tgt] - y0[pts, oth])
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
