"""The original network at the edit points, and how its pre-activations and logits change with the
LP's variables once the ReLU patterns are fixed (pure numpy).

Notation (docs/DESIGN.md, "The repair LP"): the edited layers are k..m, here numbered
locally l = 0..L-1 (l = 0 is the edited layer k, l = L-1 the logits). ``R`` = editable rows
of layer k. Per edit point i:

* ``u_i`` (|R|,) = change of the pre-activation of layer k on rows R = dW a_i + db_0[R];
* with the ReLU patterns fixed to the original network's, the change of every later
  pre-activation is affine in (u_i, db_1, ..., db_l):
  dz_l,i = C_l,i u_i + sum_{l' <= l} D_l,l',i db_l'   (``sensitivity``);
* ``v_i`` (C,) = dz_{L-1},i = change of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alexnet_repair.repair.lp.lazy import CHECK_CHUNK
from alexnet_repair.repair.lp.spec import LPSpec, margins, objective_terms


@dataclass
class Network:
    """The original network at the N edit points, float64.

    z0[l]: (N, out_l) pre-activations of local layer l (z0[-1] = logits);
    active[l]: bool (N, out_l), ReLU after layer l active (z0 > 0), l = 0..L-2;
    rows: sorted editable rows R of layer 0.
    """

    spec: LPSpec
    rows: np.ndarray
    z0: list[np.ndarray]
    active: list[np.ndarray]
    _live: np.ndarray | None = None
    _l1: np.ndarray | None = None
    _l2: np.ndarray | None = None

    @property
    def n_layers(self) -> int:
        return len(self.spec.weights)

    @property
    def live_inputs(self) -> np.ndarray:
        """Inputs of the edited layer that are non-zero at some point (computed once; the IPM's rounds share it)."""
        if self._live is None:
            live = np.zeros(self.spec.inputs.shape[1], dtype=bool)
            for chunk in _chunks(self.spec.inputs):
                live |= (chunk != 0).any(0)
            self._live = np.flatnonzero(live)
        return self._live

    @property
    def input_l1(self) -> np.ndarray:
        """(N,) ||a_i||_1 of every point's input (computed once)."""
        if self._l1 is None:
            self._l1 = np.concatenate([np.abs(c).sum(1) for c in _chunks(self.spec.inputs)] or [np.zeros(0)])
        return self._l1

    @property
    def input_l2(self) -> np.ndarray:
        """(N,) ||(a_i, 1)||_2 of every point's input with the bias's constant input (computed once)."""
        if self._l2 is None:
            self._l2 = np.sqrt(np.einsum("ij,ij->i", self.spec.inputs, self.spec.inputs) + 1.0)
        return self._l2


def _chunks(a: np.ndarray, chunk: int = CHECK_CHUNK):
    """``a`` in blocks of ``chunk`` rows: no (N, in_k) temporary for a dataset-scale preserve set."""
    return (a[lo:lo + chunk] for lo in range(0, a.shape[0], chunk))


def original_network(spec: LPSpec) -> Network:
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


def output_changes(net: Network, dW: np.ndarray, db: list[np.ndarray]) -> np.ndarray:
    """Logit changes v (N, C) of the pattern-fixed network for the parameter changes (float64)."""
    spec = net.spec
    u = spec.inputs @ dW.T + db[0]
    if net.n_layers == 1:
        v = np.zeros((u.shape[0], spec.weights[0].shape[0]))
        v[:, net.rows] = u
        return v
    return propagate(net, u, db)[-1]


def objective_value(net: Network, dW: np.ndarray, db: list[np.ndarray], changes: np.ndarray | None = None) -> float:
    """The requested objective of ``net.spec`` at (dW, db), recomputed from the parameters (``changes``: the logit
    changes of every point at them, when the caller has them already)."""
    terms = objective_terms(net.spec)
    parts = [dW.ravel()] + [b.ravel() for b in db]
    if terms.outputs:
        n_edit = net.spec.n_edit_points  # preserve points: no weight
        v = output_changes(net, dW, db) if changes is None else changes
        parts.append(v[:n_edit].ravel())
    d = np.abs(np.concatenate(parts))
    return float(terms.w_inf * d.max(initial=0.0) + terms.w_l1 * d.sum())


def points_fixed(net: Network, dW: np.ndarray, db: list[np.ndarray], tol: float = 1e-7) -> np.ndarray:
    """(N,) bool: the points whose margin and pattern rows hold (within ``tol``) at (dW, db)."""
    return point_violations(net, dW, db) <= tol


def streamed_violations(spec: LPSpec, dW: np.ndarray, db: list[np.ndarray], chunk: int = CHECK_CHUNK) -> np.ndarray:
    """:func:`point_violations` of every point of ``spec``, ``chunk`` points at a time: the memory of the check stays
    bounded however many points (a whole training set of preserve images) there are."""
    out = np.zeros(spec.inputs.shape[0])
    for lo in range(0, out.size, chunk):
        out[lo:lo + chunk] = point_violations(original_network(spec.points(lo, lo + chunk)), dW, db)
    return out


def point_violations(net: Network, dW: np.ndarray, db: list[np.ndarray]) -> np.ndarray:
    """(N,) the largest amount by which any margin or pattern row of each point misses at (dW, db) (0 when all
    hold), computed exactly: every row of every point in one pass of matrix products."""
    spec = net.spec
    u = spec.inputs @ dW.T + db[0]
    worst = np.zeros(spec.inputs.shape[0])
    if net.n_layers == 1:
        v = np.zeros((u.shape[0], spec.weights[0].shape[0]))
        v[:, net.rows] = u
        dz = [v]
    else:
        full = np.zeros((u.shape[0], spec.weights[0].shape[0]))
        full[:, net.rows] = u
        dz = [full] + propagate(net, u, db)
        for l in range(net.n_layers - 1):
            plo, phi = pattern_change_bounds(net.z0[l], net.active[l], spec.pattern_eps)
            miss = np.maximum(np.where(np.isfinite(plo), plo - dz[l], 0.0), np.where(np.isfinite(phi), dz[l] - phi, 0.0))
            worst = np.maximum(worst, miss.max(1, initial=0.0))
    y = net.z0[-1] + dz[-1]
    return np.maximum(worst, spec.point_margins() - margins(y, spec.targets))
