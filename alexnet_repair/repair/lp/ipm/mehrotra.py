"""A primal-dual interior-point method (Mehrotra predictor-corrector, infeasible start) for
``min c@x  s.t.  A x = b,  0 <= x <= ub`` (ub may be +inf), pure numpy.

``A`` is an operator with ``matvec``, ``rmatvec``, ``factor(theta)`` and ``solve(r)`` for the
normal equations A diag(theta) A^T y = r (see normal_equations.py for the repair LP's structure).
Every normal solve gets a few steps of conjugate gradients preconditioned by the factorisation. The result is approximate (an interior
point): the caller certifies it (see certified.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CG_REL = 1e-3  # normal-equations solves stop at relative residual CG_REL * (the IPM's current merit), clipped to
CG_MAX = 1e-5  # [1e-13, CG_MAX]: looser saves CG steps until the IPM needs more iterations (1e-4 does)


@dataclass
class IPMResult:
    converged: bool
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray  # dual of x >= 0
    s: np.ndarray  # dual of x <= ub (0 where ub = inf)
    iterations: int
    primal_obj: float
    dual_obj: float
    rel_gap: float
    p_res: float
    d_res: float
    time: float
    message: str
    snapshots: list | None = None  # per level of ``snapshot_below``: (x, w, y, z, s) of the first iterate below it


def normal_solve(op, theta: np.ndarray, rhs: np.ndarray, max_iter: int = 2, tol: float = 1e-13) -> np.ndarray:
    """Solve (A diag(theta) A^T) y = rhs by conjugate gradients preconditioned with the factored ``op.solve``.

    With an exact factorisation one step is enough; when the factorisation is inaccurate in a few directions
    (the Sherman-Morrison step of a dense column on a nearly singular rest), CG removes those errors in a few
    steps where plain iterative refinement can stall or diverge. ``max_iter`` counts the steps after the first.
    """
    y = op.solve(rhs)
    r = rhs - op.matvec(theta * op.rmatvec(y))
    norm = np.linalg.norm(rhs)
    if np.linalg.norm(r) <= tol * norm:  # the factorisation alone was accurate enough: no preconditioned residual
        return y
    z = op.solve(r)
    p, rz = z, r @ z
    for _ in range(max_iter):
        if np.linalg.norm(r) <= tol * norm or rz <= 0:
            break
        q = op.matvec(theta * op.rmatvec(p))
        pq = p @ q
        if pq <= 0:
            break
        alpha = rz / pq
        y, r = y + alpha * p, r - alpha * q
        z = op.solve(r)
        rz, rz_old = r @ z, rz
        p = z + (rz / rz_old) * p
    return y


def _max_step(v: np.ndarray, dv: np.ndarray) -> float:
    neg = dv < 0
    return float(min(1.0, np.min(-v[neg] / dv[neg]))) if neg.any() else 1.0


# Over 60 lines: Mehrotra's predictor-corrector iteration, whose iterates are shared by its inner steps.
def solve_ipm(op, c: np.ndarray, b: np.ndarray, ub: np.ndarray, tol: float = 1e-10,
              max_iter: int = 100, deadline: float | None = None, accept=None, accept_below: float = 1e-6,
              refine: int = 10, correctors: int = 1, infeasible=None, reg_primal: float = 1e-8,
              start: tuple | None = None, snapshot_below=()) -> IPMResult:
    """Mehrotra predictor-corrector on ``min c@x, op x = b, 0 <= x <= ub``.

    ``accept(x, y, merit) -> bool`` is asked at every iterate from the first whose residuals and gap are below
    ``accept_below`` on; the first accepted iterate is returned (converged=True).
    ``refine``: CG steps after the first solve of every normal-equations system (see normal_solve);
    up to ``correctors`` Gondzio centrality correctors per iteration (they reuse the factor).
    ``reg_primal`` caps every theta (a proximal term): weightless interior columns (preserve points' output
    changes) otherwise drive theta past 1e12 and the normal equations lose all accuracy near the optimum;
    the point is certified independently anyway, so the slightly perturbed Newton steps cost nothing in rigour.
    ``infeasible(y) -> bool`` is asked from iteration 5 on while the primal residual stays above 1e-6: True
    (the caller proved infeasibility from y, a Farkas ray) ends the run with message "infeasible".
    ``start`` = (x, w, y, z, s): a warm start (e.g. a mapped snapshot of a run on a nearby LP) instead of the
    default point; the result's ``snapshots[k]`` is the first iterate after the start with merit below
    ``snapshot_below[k]`` (None if none was).
    """
    t0 = time.perf_counter()
    n = c.size
    bnd = np.isfinite(ub)
    ubb = np.where(bnd, ub, 0.0)
    x = np.where(bnd, np.minimum(1.0, ub / 2), 1.0)
    w = np.where(bnd, ubb - x, 1.0)  # only used where bnd
    z = np.maximum(np.abs(c), 1.0)
    s = np.where(bnd, 1.0, 0.0)
    y = np.zeros(b.size)
    if start is not None:
        x, w, y, z, s = (np.array(v, dtype=float) for v in start)
    snapshots = [None] * len(snapshot_below)
    nb = int(bnd.sum())
    b_norm, c_norm = 1.0 + np.linalg.norm(b), 1.0 + np.linalg.norm(c)
    msg = "iteration limit"
    converged = False
    best = (np.inf, None)  # (merit, iterate) - the final iterations may lose accuracy
    for it in range(max_iter):
        rb = b - op.matvec(x)
        rc = c - op.rmatvec(y) - z + s
        ru = np.where(bnd, ubb - x - w, 0.0)
        pobj = float(c @ x)
        dobj = float(b @ y - ubb @ s)
        p_res = np.linalg.norm(rb) / b_norm
        d_res = np.linalg.norm(rc) / c_norm
        gap = abs(pobj - dobj) / (1.0 + abs(pobj))
        log.debug("ipm %3d: pobj %.12g dobj %.12g gap %.2e pres %.2e dres %.2e", it, pobj, dobj, gap, p_res, d_res)
        if p_res < tol and d_res < tol and gap < tol:
            converged, msg = True, "converged"
            break
        merit = max(p_res, d_res, gap)
        for k, level in enumerate(snapshot_below):
            if snapshots[k] is None and merit < level and it > 0:
                snapshots[k] = (x, w, y, z, s)
        if accept is not None and min(merit, best[0]) < accept_below and accept(x, y, merit):  # once accurate,
            #                                               every iterate: a late one may still improve the dual
            converged, msg = True, "accepted"
            break
        if merit < best[0]:
            best = (merit, (x, y, z, s, it, pobj, dobj, gap, p_res, d_res))
        elif best[0] < 1e-6 and merit > 100 * best[0]:
            msg = "stalled (numerical accuracy)"
            x, y, z, s, it, pobj, dobj, gap, p_res, d_res = best[1]
            break
        if infeasible is not None and it >= 5 and p_res > 1e-6 and infeasible(y):
            msg = "infeasible"
            break
        if not np.isfinite(pobj + dobj) or abs(pobj) > 1e30 or (it >= 50 and p_res > 1e-3):
            msg = "no progress (infeasible?)"
            break
        if deadline is not None and time.perf_counter() > deadline:
            msg = "time limit"
            break
        mu = (x @ z + w[bnd] @ s[bnd]) / (n + nb)
        inv_theta = z / x + np.where(bnd, s / w, 0.0)
        theta = 1.0 / (inv_theta + reg_primal)  # primal regularisation: theta <= 1/reg_primal
        cg_tol = float(np.clip(CG_REL * merit, 1e-13, CG_MAX))  # inexact Newton: far from the optimum, less accuracy
        op.factor(theta)

        def newton(r_xz, r_ws, linear=True):
            rb_, rc_, ru_ = (rb, rc, ru) if linear else (0.0, 0.0, 0.0)
            rho = rc_ - r_xz / x + np.where(bnd, (r_ws - s * ru_) / w, 0.0)
            rhs = rb_ + op.matvec(theta * rho)
            dy = normal_solve(op, theta, rhs, refine, cg_tol)
            dx = theta * (op.rmatvec(dy) - rho)
            dz = (r_xz - z * dx) / x
            dw = np.where(bnd, ru_ - dx, 0.0)
            ds = np.where(bnd, (r_ws - s * dw) / w, 0.0)
            return [dx, dy, dz, dw, ds]

        def steps(d):
            dx, _, dz, dw, ds = d
            return (min(_max_step(x, dx), _max_step(w[bnd], dw[bnd])),
                    min(_max_step(z, dz), _max_step(s[bnd], ds[bnd])))

        d = newton(-x * z, np.where(bnd, -w * s, 0.0))  # predictor (affine scaling)
        ap, ad = steps(d)
        dx, _, dz, dw, ds = d
        mu_aff = ((x + ap * dx) @ (z + ad * dz) + (w + ap * dw)[bnd] @ (s + ad * ds)[bnd]) / (n + nb)
        sigma = (mu_aff / mu) ** 3
        d = newton(sigma * mu - x * z - dx * dz, np.where(bnd, sigma * mu - w * s - dw * ds, 0.0))
        ap, ad = steps(d)
        for _ in range(correctors):  # Gondzio's multiple centrality correctors
            ap_t, ad_t = min(1.0, ap + 0.2), min(1.0, ad + 0.2)
            dx, _, dz, dw, ds = d
            vx = (x + ap_t * dx) * (z + ad_t * dz)
            vw = np.where(bnd, (w + ap_t * dw) * (s + ad_t * ds), sigma * mu)
            lo_t, hi_t = 0.1 * sigma * mu, 10.0 * sigma * mu
            cx = np.clip(vx, lo_t, hi_t) - vx
            cw = np.where(bnd, np.clip(vw, lo_t, hi_t) - vw, 0.0)
            cx, cw = np.maximum(cx, -hi_t), np.maximum(cw, -hi_t)
            dc = newton(cx, cw, linear=False)
            d_new = [u + v for u, v in zip(d, dc)]
            ap2, ad2 = steps(d_new)
            if ap2 + ad2 < 1.02 * (ap + ad):
                break
            d, ap, ad = d_new, ap2, ad2
        dx, dy, dz, dw, ds = d
        eta = max(0.9, 1.0 - 10 * mu / max(abs(pobj), 1.0)) if it > 5 else 0.9
        eta = min(eta, 0.9995)
        ap, ad = eta * ap, eta * ad
        log.debug("ipm %3d: sigma %.2e step primal %.3f dual %.3f", it, sigma, ap, ad)
        x, w = x + ap * dx, np.where(bnd, w + ap * dw, 1.0)
        y, z, s = y + ad * dy, z + ad * dz, np.where(bnd, s + ad * ds, 0.0)
    return IPMResult(converged, x, y, z, s, it + 1, pobj, dobj, gap, p_res, d_res, time.perf_counter() - t0, msg,
                     snapshots)
