"""The IPM point's certificate, in float64, independent of the IPM (see certified.py for the solve):

* primal: (dW, db) decoded, every logit / pre-activation change recomputed from them and
  every row of the exact LP checked (all margins >= margin + margin_slack, pattern bounds,
  |change| <= bound) to FEAS_TOL, the absolute tolerance HiGHS's simplex also allows.
  UB = the exact objective (all of d) there.
* dual: LB = minimum over the column box of the Lagrangian at the IPM's row duals y: a valid
  lower bound of the relaxation, hence of the exact LP, whatever y is (columns without a
  finite bound get the bound implied by objective <= UB).
* accepted when UB - LB <= GAP_TOL * UB: optimal to that relative precision, tighter than
  the 1e-6 the formulations are required to agree to. UB and LB may come from different iterates
  (Bounds): each is valid on its own.

Infeasibility is accepted only with a Farkas certificate (farkas, margin_farkas), checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp.ipm.formulation import KIND_SHIFT, ROW_MARGIN, TIGHTEN, IpmLP
from alexnet_repair.repair.lp.lazy import VIOLATION_TOL
from alexnet_repair.repair.lp.network import objective_value, output_changes
from alexnet_repair.repair.lp.spec import LPSpec, other_classes, row_margins

GAP_TOL = 1e-7  # certified relative optimality gap required to accept the IPM point
FARKAS_TOL = 1e-9  # a Farkas certificate must clear its own float64 rounding by this relative margin
FEAS_TOL = VIOLATION_TOL  # recomputed rows may miss by this much (lazy.py: HiGHS's primal feasibility tolerance)


@dataclass
class Certificate:
    dW: np.ndarray
    db: list[np.ndarray]
    upper: float  # exact objective at (dW, db)
    lower: float  # valid lower bound of the exact LP's optimum
    feasible: bool  # every row of the exact LP holds to FEAS_TOL
    slack: np.ndarray  # (N*(C-1),) margin slack of every margin row (lr.margin_rows order)

    @property
    def gap(self) -> float:
        return (self.upper - self.lower) / max(abs(self.upper), 1e-12)

    @property
    def ok(self) -> bool:
        return self.feasible and self.gap <= GAP_TOL


def margin_slacks(spec: LPSpec, y_new: np.ndarray) -> np.ndarray:
    """y[t] - y[c] - (margin + margin_slack) for every margin row, in lr.margin_rows order."""
    return (row_margins(y_new, spec.targets) - spec.point_margins()[:, None]).ravel()


def certify(spec: LPSpec, net: nw.Network, lp: IpmLP, x: np.ndarray, y: np.ndarray) -> Certificate:
    """Decode the IPM point x (row duals y) and certify it; see the module doc."""
    dW, db = lp.decode(x)
    v = output_changes(net, dW, db)
    ub_val = objective_value(net, dW, db, v)
    slack = margin_slacks(spec, net.z0[-1] + v)
    feasible = bool(slack.min(initial=np.inf) >= -FEAS_TOL)
    if net.n_layers == 2:
        u = spec.inputs @ dW.T + db[0]
        lo, hi = nw.pattern_change_bounds(net.z0[0][:, net.rows], net.active[0][:, net.rows], spec.pattern_eps)
        feasible &= bool(((u >= lo - FEAS_TOL) & (u <= hi + FEAS_TOL)).all())
    return Certificate(dW, db, ub_val, lower_bound(lp, y, ub_val), feasible, slack)


def lower_bound(lp: IpmLP, y: np.ndarray, upper: float) -> float:
    """The Lagrangian at row duals y minimised over the column box of the solutions with objective <= upper:
    a lower bound of the exact LP's optimum for any y, provided some feasible point has objective <= upper."""
    rc = lp.c - lp.op.rmatvec(y)
    up = lp.column_upper(upper * lp.cscale)
    lb_s = lp.b_exact @ y + np.sum(np.minimum(rc, 0.0) * up) - TIGHTEN * np.sum(np.maximum(rc[lp.u_cols], 0.0))
    return float(lb_s) / lp.cscale


class Bounds:
    """The best of the certificates seen so far, over iterates and rounds: the feasible point with the least
    objective, and the largest lower bound of any row duals (each LP of the rounds is a relaxation of the exact
    one, so each of its lower bounds is the exact LP's). The IPM's last iterates often improve the dual while a
    normal-equations solve that lost accuracy spoils the primal; the pair of the best of each is certified."""

    def __init__(self):
        self.primal: Certificate | None = None
        self.lower = -np.inf

    def add(self, lp: IpmLP, cert: Certificate, y: np.ndarray) -> Certificate:
        """Take in ``cert`` (of ``y``, on ``lp``) and return the best certificate so far (``cert`` while none is
        feasible)."""
        if cert.feasible and (self.primal is None or cert.upper < self.primal.upper):
            self.primal = cert
        if cert.feasible:
            self.lower = max(self.lower, cert.lower)
        elif self.primal is not None:  # an infeasible point's own objective bounds nothing: use the best one's
            self.lower = max(self.lower, lower_bound(lp, y, self.primal.upper))
        return self.best() or cert

    def best(self) -> Certificate | None:
        return None if self.primal is None else replace(self.primal, lower=max(self.lower, self.primal.lower))

    @property
    def ok(self) -> bool:
        best = self.best()
        return best is not None and best.ok


def farkas(lp: IpmLP, y: np.ndarray) -> bool:
    """Whether the row multipliers y prove the exact LP infeasible (a Farkas certificate, float64, independent
    of the IPM): for every x in the column box, y @ (A x) <= sum_j max(g_j lo_j, g_j hi_j) with g = A^T y;
    if b_exact @ y exceeds that, no x in the box meets A x = b_exact. The box is the one every solution could be
    brought into (column_upper without an objective bound), and the IPM's LP is a relaxation of the exact one
    (fewer margin rows, exact pattern bounds through lo = -TIGHTEN on the shifted u columns), so its
    infeasibility is the exact LP's."""
    g = lp.op.rmatvec(y)
    lo = np.zeros_like(g)
    lo[lp.u_cols] = -TIGHTEN
    hi = lp.column_upper()
    if not np.isfinite(hi).all():
        return False
    reach = np.maximum(g * lo, g * hi)
    lhs = float(lp.b_exact @ y)
    scale = float(np.abs(lp.b_exact) @ np.abs(y) + np.abs(reach).sum())
    return lhs - float(reach.sum()) > FARKAS_TOL * max(scale, 1e-300)


def margin_farkas(spec: LPSpec, net: nw.Network, lp: IpmLP, y: np.ndarray) -> bool:
    """Whether the margin rows' multipliers lam = max(y, 0) alone prove the last-layer LP infeasible (float64,
    independent of the IPM): every margin row reads G_m . w >= g_m in the weight and bias changes w, |w| <= B, so
    lam . g > max over the box of lam^T G w = B |G^T lam|_1 leaves no w. Unlike ``farkas`` it needs no box on the
    logit changes, slacks and t, whose loose bounds (|v| <= B (|a|_1 + 1)) swamp the IPM's approximate ray."""
    if net.n_layers != 1:
        return False
    n_cls = spec.weights[-1].shape[0]
    pos = np.flatnonzero(lp.row_keys >> KIND_SHIFT == ROW_MARGIN)
    lam = np.maximum(y[pos], 0.0)
    pts, k = np.divmod(lp.row_keys[pos] & ((1 << KIND_SHIFT) - 1), n_cls - 1)
    coef = np.zeros((spec.inputs.shape[0], n_cls))  # d(margin rows . lam) / d(logit change of (point, class))
    np.add.at(coef, (pts, spec.targets[pts]), lam)
    np.add.at(coef, (pts, other_classes(spec.targets, n_cls)[pts, k]), -lam)
    coef = coef[:, net.rows]                         # only the editable classes' logits change
    reach = spec.bound * float(np.abs(coef.T @ spec.inputs).sum() + np.abs(coef.sum(0)).sum())  # weights, biases
    lhs = float(lam @ lp.b_exact[pos])
    return lhs - reach > FARKAS_TOL * max(float(lam @ np.abs(lp.b_exact[pos])) + reach, 1e-300)


def polish(lp: IpmLP, res, steps: int = 3) -> np.ndarray:
    """Reduce the primal residual of the IPM point: least-squares corrections dx = T A^T dy,
    (A T A^T) dy = b - A x in the metric T = diag(theta) of that point (moves the basic-like
    columns, hardly the ones at a bound), each step cut to stay inside the box."""
    x = res.x.copy()
    bnd = np.isfinite(lp.ub)
    w = np.where(bnd, lp.ub - x, 1.0)
    theta = 1.0 / (res.z / x + np.where(bnd, res.s / w, 0.0))
    lp.op.factor(theta)
    for _ in range(steps):
        r = lp.b - lp.op.matvec(x)
        dy = lp.op.solve(r)
        for _ in range(2):
            dy += lp.op.solve(r - lp.op.matvec(theta * lp.op.rmatvec(dy)))
        dx = theta * lp.op.rmatvec(dy)
        neg, pos = dx < 0, (dx > 0) & bnd
        alpha = min(1.0, 0.99 * np.min(-x[neg] / dx[neg], initial=np.inf),
                    0.99 * np.min((lp.ub[pos] - x[pos]) / dx[pos], initial=np.inf))
        x = x + alpha * dx
    return x
