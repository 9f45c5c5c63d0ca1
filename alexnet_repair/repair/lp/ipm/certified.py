"""The "ipm" formulation: the repair LP solved by the structured interior-point method
(mehrotra.py + normal_equations.py), certified independently, else handed to exact column generation.

The IPM's LP is the exact one (every dW column, the |dW| <= t and |db| <= t coupling as the
Ew rows of normal_equations.py) except that it holds only some margin rows (all of them while
there are at most ALL_ROWS, else per edit point the INIT_ROWS most binding ones; rows found violated
are added and the IPM re-run), and margin rows / pattern bounds are tightened by TIGHTEN.

Preserve points (last layer) are points without objective weight whose rows enter the same way,
one at a time: a preserve point's logit changes and D rows exist only for the classes its kept rows
touch (formulation._output_members), so a point costs the IPM nothing until one of its rows is
violated. Per round each violated point adds its most violated row; preserve rows far from binding
leave again in the first DROP_ROUNDS rounds (the round's point stays optimal without them). A
round that misses rows ends as soon as its iterate is EARLY-accurate; the next round starts from an early
iterate of this one (warm.py), which saves a fifth to a quarter of the iterations. The certificate below checks
every row of every point, so the rows left out never matter to the answer (certificate.py: float64,
independent of the IPM; the best feasible point and the best lower bound of all iterates and rounds are paired).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import replace

import numpy as np

from alexnet_repair.repair.lp import network as nw
from alexnet_repair.repair.lp.colgen import solve_colgen
from alexnet_repair.repair.lp.ipm.blas_threads import blas_threads, threads_for
from alexnet_repair.repair.lp.ipm.certificate import (FEAS_TOL, GAP_TOL, Bounds, certify, farkas, margin_farkas,
                                                      margin_slacks, polish)
from alexnet_repair.repair.lp.ipm.mehrotra import solve_ipm
from alexnet_repair.repair.lp.ipm.formulation import build_ipm_lp
from alexnet_repair.repair.lp.ipm.warm import WARM, LastRound, round_start
from alexnet_repair.repair.lp.lazy import (ALL_ROWS, DROP_ROUNDS, DROP_SLACK, EARLY, INIT_ROWS, MAX_ROUNDS, NEAR_PRESERVE,
                                           NEAR_ROWS, PRESERVE_PER_ROUND, PRESERVE_ROWS, lazy_rounds)
from alexnet_repair.repair.lp.network import output_changes
from alexnet_repair.repair.lp.spec import LPSolution, LPSpec
from alexnet_repair.solvers import SolveOptions, Status

log = logging.getLogger(__name__)

MAX_DENSE = 12000  # largest dense system (rows) the IPM factors: 1.2 GB, ~1e12/3 flops per iteration


def ipm_applicable(spec: LPSpec) -> bool:
    """The IPM path handles the last layer and the penultimate one, objectives with an l1 part,
    while its dense system (see normal_equations.choose_mode) stays below MAX_DENSE rows."""
    if len(spec.weights) > 2 or spec.objective not in ("linf+l1n", "l1"):
        return False
    n_pts, n_cls = spec.inputs.shape[0], spec.weights[-1].shape[0]
    n_r = spec.weights[0].shape[0] if spec.rows is None else np.unique(spec.rows).size
    n_o = spec.n_edit_points * min(n_cls - 1, INIT_ROWS + 1) + (n_pts * n_cls if len(spec.weights) == 2 else 0)
    return min(n_pts * n_r if len(spec.weights) == 1 else np.inf, n_o) <= MAX_DENSE


def near_levels(spec: LPSpec) -> np.ndarray:
    """(N*(C-1),) the slack below which a margin row joins the IPM's LP (see NEAR_ROWS, NEAR_PRESERVE)."""
    n, n_cls = spec.inputs.shape[0], spec.weights[-1].shape[0]
    level = np.full(n, NEAR_PRESERVE * spec.margin)
    level[: spec.n_edit_points] = NEAR_ROWS * spec.margin
    return np.repeat(level, n_cls - 1)


def _worst_per_point(spec: LPSpec, rows: np.ndarray, slack: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``rows`` with, of each preserve point, only its PRESERVE_PER_ROUND least-slack ones, and of those only the
    PRESERVE_ROWS deepest ones: the least slack over the point's input norm (``norms``: (N,) |(a_i, 1)|_2; slack /
    norm is the distance of the dW point from the row's hyperplane). Deep cuts cut more of the next LP's solution
    than the same slack on a large-norm image (10,000 real preserve images: 8 rounds either way, 2,214 -> 1,776
    preserve rows, 104 -> 90 s)."""
    n_cls = spec.weights[-1].shape[0]
    pts = rows // (n_cls - 1)
    slack = slack / np.repeat(norms, n_cls - 1)
    order = np.lexsort((slack[rows], pts))
    rows, pts = rows[order], pts[order]
    rank = np.arange(rows.size) - np.searchsorted(pts, pts)
    edit = pts < spec.n_edit_points
    preserve = rows[~edit & (rank < PRESERVE_PER_ROUND)]
    preserve = preserve[np.argsort(slack[preserve], kind="stable")[:PRESERVE_ROWS]]
    return np.sort(np.r_[rows[edit], preserve])


def initial_margin_rows(spec: LPSpec, net: nw.Network, per_point: int = INIT_ROWS, near=None) -> np.ndarray:
    """Margin rows the first IPM round includes: every one violated or within NEAR_ROWS * margin, judged at
    ``near`` = (dW, db) (a nearby solution, e.g. the preserve loop's previous one) or at the original network;
    and of the edit points all rows while they are few and alone (_all_edit_rows), else the ``per_point`` most
    binding ones per point. A preserve point's rows hold at the original network, so most of them never enter."""
    n, n_cls = net.z0[-1].shape
    n_e = spec.n_edit_points
    if _all_edit_rows(spec):
        return np.arange(n * (n_cls - 1))
    y = net.z0[-1] if near is None else net.z0[-1] + output_changes(net, *near)
    need = -margin_slacks(spec, y).reshape(n, n_cls - 1)  # > 0: the row needs a change
    take = need >= -near_levels(spec).reshape(n, n_cls - 1)
    # edit points: per point its per_point most binding rows, the rest join when violated
    take[:n_e] = np.argsort(np.argsort(-need[:n_e], axis=1), axis=1) < per_point
    return np.flatnonzero(take.ravel())


def _all_edit_rows(spec: LPSpec) -> bool:
    """Whether every edit margin row is in every round: while they are few (ALL_ROWS) and no preserve point makes
    rounds anyway. With preserve points the edit rows join lazily too, in the rounds the preserve rows need: most
    never bind, and each costs the dense system as much as a preserve row (10,000 real preserve images: 900 edit
    rows -> 1,956 rows in the first LP instead of 2,756; 89 s -> 81 s)."""
    n_cls = spec.weights[-1].shape[0]
    return spec.n_edit_points * (n_cls - 1) <= ALL_ROWS and spec.n_edit_points == spec.inputs.shape[0]


class _Rounds:
    """The IPM rounds' shared state: one IPM solve per round of lazy.lazy_rounds, warm-started from the last one,
    every iterate's certificate pooled in ``bounds``."""

    def __init__(self, spec: LPSpec, net: nw.Network, options: SolveOptions | None, deadline: float | None):
        self.spec, self.net, self.options, self.deadline = spec, net, options, deadline
        self.build = self.ipm_time = 0.0
        self.iters = {"ipm": 0}
        self.prev = None  # a LastRound: what the next round's warm start needs of this one
        self.bounds = Bounds()  # the best feasible point and lower bound of every iterate of every round
        self.lp = self.res = self.cert = None
        self.keep = np.zeros(0, dtype=np.int64)
        self.fresh = self.keep  # the margin rows this round's LP is the first to hold

    def solve(self, keep: np.ndarray, round_: int) -> "_Rounds":
        spec, net = self.spec, self.net
        tb = time.perf_counter()
        self.fresh, self.keep = np.setdiff1d(keep, self.keep), keep
        self.lp = lp = build_ipm_lp(spec, net, keep)
        start = round_start(self.prev, keep, lp)
        threads = (self.options.threads if self.options else None) or threads_for(lp.op.factor_flops)
        self.build += time.perf_counter() - tb
        state = {}

        def accept(x, y, merit):
            state["cert"] = c = certify(spec, net, lp, x, y)
            missing = np.setdiff1d(np.flatnonzero(c.slack < -FEAS_TOL), keep)
            # stop when certified, when rows are missing, or when only primal accuracy is missing (polish)
            return self.bounds.add(lp, c, y).ok or (merit < EARLY and missing.size > 0) or \
                (merit < 1e-6 and abs(c.gap) <= GAP_TOL / 2)

        def run(start_point):
            with blas_threads(threads):
                return solve_ipm(lp.op, lp.c, lp.b, lp.ub, deadline=self.deadline, accept=accept, accept_below=EARLY,
                                 infeasible=lambda y: farkas(lp, y) or margin_farkas(spec, net, lp, y),
                                 start=start_point, snapshot_below=WARM)

        res = run(start)
        if start is not None and res.message not in ("accepted", "converged", "infeasible", "time limit"):
            log.info("ipm round %d: %s after %d iterations (%.2fs) from the warm start; again from a cold one",
                     round_, res.message, res.iterations, res.time)  # a warm start only saves time: never rely on it
            self.ipm_time, self.iters["ipm"] = self.ipm_time + res.time, self.iters["ipm"] + res.iterations
            res = run(None)
        self.res = res
        self.prev = LastRound(lp.col_keys, lp.row_keys, lp.ub, res.snapshots, keep)
        self.ipm_time += res.time
        self.iters["ipm"] += res.iterations
        if res.message == "infeasible":
            log.info("ipm round %d: infeasible after %d iterations (%.2fs), proven by a Farkas certificate",
                     round_, res.iterations, res.time)
            return self
        self.cert = cert = state["cert"] if res.message == "accepted" else certify(spec, net, lp, res.x, res.y)
        if res.message != "accepted":  # accept() took its certificate in already
            self.bounds.add(lp, cert, res.y)
        if not self.bounds.ok and abs(cert.gap) <= GAP_TOL and res.x is not None:  # only primal accuracy is missing
            with blas_threads(threads):
                x = polish(lp, res)
            polished = certify(spec, net, lp, x, res.y)
            log.info("ipm: polished the primal point: min margin slack %.2e -> %.2e", cert.slack.min(),
                     polished.slack.min())
            self.cert = cert = polished if polished.ok or polished.slack.min() > cert.slack.min() else cert
            self.bounds.add(lp, polished, res.y)
        best = self.bounds.best()
        log.info("ipm round %d (%s, %d margin rows): %s after %d iterations (%.2fs); UB %.12g LB %.12g gap %.2e "
                 "feasible %s%s", round_, lp.op.mode, keep.size, res.message, res.iterations, res.time, cert.upper,
                 cert.lower, cert.gap, cert.feasible,
                 "" if best is None else f"; best of all iterates: UB {best.upper:.12g} LB {best.lower:.12g} gap "
                                         f"{best.gap:.2e}")
        return self

    def final(self, _=None) -> bool:
        """Whether this round's outcome stands whatever rows are missing: infeasible, certified or out of time."""
        return self.res.message == "infeasible" or self.bounds.ok or \
            (self.deadline is not None and time.perf_counter() >= self.deadline)

    def violations(self, _=None) -> np.ndarray:
        """By how much each margin row misses at this round's point (its negative slack)."""
        return -self.cert.slack

    def select(self, _, miss: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """The rows that join: those outside ``keep`` below their join level (near_levels: violated or about to
        bind), of a preserve point only its worst (_worst_per_point); none when no row outside ``keep`` is violated
        (every row is in, and still no certificate)."""
        if not (miss > FEAS_TOL).any():
            return np.zeros(0, dtype=np.int64)
        close = np.setdiff1d(np.flatnonzero(self.cert.slack < near_levels(self.spec)), keep)
        return _worst_per_point(self.spec, close, self.cert.slack, self.net.input_l2)

    def drop(self, _, keep: np.ndarray, round_: int) -> np.ndarray:
        """In the first DROP_ROUNDS rounds, rows with slack > DROP_SLACK * margin leave (the point stays optimal
        without them); all edit rows stay when they all started in."""
        if round_ >= DROP_ROUNDS:
            return keep
        first_p = self.spec.n_edit_points * (self.spec.weights[-1].shape[0] - 1)
        stays = self.cert.slack[keep] <= DROP_SLACK * self.spec.margin
        stays |= np.isin(keep, self.fresh)  # joined for this round: a row leaves after two LPs, not one (a row
        #                                     that joined violated and left at once came back: LPs cycled)
        if _all_edit_rows(self.spec):
            stays |= keep < first_p
        return keep[stays]


# Over 60 lines: the outcomes of the rounds (certified, infeasible, time limit, uncertified) built inline.
def solve_certified(spec: LPSpec, net: nw.Network, solver: str = "auto", options: SolveOptions | None = None,
                    near=None, fallback: bool = True) -> LPSolution:
    """IPM + certificate, with lazy margin rows (chosen at ``near``, see initial_margin_rows), preserve points'
    rows included (they enter as they are found violated); falls back to exact column generation when no
    certificate is reached (``fallback`` False: returns status ERROR instead)."""
    t0 = time.perf_counter()
    deadline = None if options is None or options.time_limit is None else t0 + options.time_limit
    has_preserve = spec.n_edit_points < spec.inputs.shape[0]
    rounds = _Rounds(spec, net, options, deadline)
    _, n_rounds = lazy_rounds(rounds.solve, rounds.violations, initial_margin_rows(spec, net, near=near),
                              stop=rounds.final, select=rounds.select, drop=rounds.drop, what="margin rows (ipm)",
                              objective=lambda r: r.cert.upper, max_rounds=None if has_preserve else MAX_ROUNDS)
    lp, res, cert, keep = rounds.lp, rounds.res, rounds.cert, rounds.keep
    build, ipm_time, iters, bounds = rounds.build, rounds.ipm_time, rounds.iters, rounds.bounds
    round_ = n_rounds - 1
    if res.message == "infeasible":
        return LPSolution(Status.INFEASIBLE, None, None, None, None, build, ipm_time, "ipm",
                          lp.op.n, lp.op.n_rows, 0, n_solves=n_rounds, iterations=iters,
                          message="infeasible: Farkas certificate from the IPM's row multipliers, checked in float64")
    n_in = spec.inputs.shape[1]  # the weight block's nonzeros, dead inputs (left out of the LP) included
    a_nnz = int(lp.op.ax.nnz + 2 * lp.op.n_r * (n_in + 1) * np.count_nonzero(spec.inputs) / n_in)
    sizes = (lp.op.n, lp.op.n_rows, a_nnz)
    if bounds.ok:
        cert = bounds.best()
        n_cls = spec.weights[-1].shape[0]
        kept_p = keep[keep >= spec.n_edit_points * (n_cls - 1)]
        return LPSolution(Status.OPTIMAL, cert.dW, cert.db, cert.upper, None, build, ipm_time, "ipm", *sizes,
                          message=f"ipm ({lp.op.mode}, {round_ + 1} rounds): certified relative gap {cert.gap:.1e}",
                          n_solves=round_ + 1, iterations=iters, preserve_rows=kept_p.size,
                          preserve_points=np.unique(kept_p // (n_cls - 1)).size)
    if deadline is not None and time.perf_counter() >= deadline:
        return LPSolution(Status.TIME_LIMIT, None, None, None, None, build, ipm_time, "ipm", *sizes,
                          message=f"time limit in the IPM ({res.message})", n_solves=round_ + 1, iterations=iters)
    if not fallback:
        return LPSolution(Status.ERROR, None, None, None, None, build, ipm_time, "ipm", *sizes,
                          message=f"ipm: not certified (gap {cert.gap:.1e}, feasible {cert.feasible})",
                          n_solves=round_ + 1, iterations=iters)
    log.info("ipm: not certified (gap %.2e, feasible %s); falling back to column generation", cert.gap, cert.feasible)
    remaining = None if deadline is None else deadline - time.perf_counter()
    sol = solve_colgen(spec, net, solver=solver, options=replace(options or SolveOptions(), time_limit=remaining))
    sol.build_time += build
    sol.solve_time += ipm_time
    sol.formulation = "ipm->colgen"
    sol.iterations["ipm"] = iters["ipm"]
    return sol
