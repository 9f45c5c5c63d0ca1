"""The APRNN repair LP (pure numpy / scipy; no torch): its spec (``spec``), the original network's
algebra (``network``), the row blocks and column layout (``rows``) and three formulations of the same
optimum: ``straightforward`` (reference), ``colgen`` (column generation) and ``ipm`` (the certified
structured interior-point method, ``ipm/``). :func:`solve_repair_lp` picks one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from alexnet_repair.errors import UsageError
from alexnet_repair.repair.lp.colgen import solve_colgen
from alexnet_repair.repair.lp.ipm.certified import ipm_applicable, solve_certified
from alexnet_repair.repair.lp.network import original_network, point_violations, points_fixed
from alexnet_repair.repair.lp.spec import FORMULATIONS, OBJECTIVES, LPSolution, LPSpec
from alexnet_repair.repair.lp.straightforward import solve_straightforward
from alexnet_repair.solvers import SolveOptions, Status

log = logging.getLogger(__name__)

PRESERVE_BATCH = 100  # preserve images added per round: the most violated first, this many or PRESERVE_SHARE of
PRESERVE_SHARE = 0.0  # the violated ones, whichever is more (adding all at once makes the LP far larger than needed)
COLGEN_POINTS = 30  # auto: a hidden layer with this few points goes to column generation. Measured (session 5,
#                     seed0, penultimate layer, 256 rows, LP only): 10 images colgen 2.8 s / IPM 95 s; 20: 19 / 97 s;
#                     30: 66 / 99 s; 40: 178 / 86 s
PRESERVE_TOL = 1e-7  # a preserve row is violated when it misses by more (HiGHS's primal feasibility tolerance)

__all__ = ["FORMULATIONS", "OBJECTIVES", "LPSolution", "LPSpec", "solve_repair_lp"]


def solve_repair_lp(spec: LPSpec, solver: str = "auto", options: SolveOptions | None = None,
                    formulation: str = "auto") -> LPSolution:
    """Solve the repair LP of ``spec``, preserve set included; see :func:`solve_points` for ``formulation``.

    Preserve images enter lazily. Last layer, ipm/auto: the certified IPM gets every preserve image as a point
    and takes in its rows one by one as they are violated (see ipm/certified.py); its certificate checks all
    N x (C-1) rows. Otherwise (or when the IPM gives no certificate): solve, check every preserve row (margins
    and, for a hidden layer, the activation pattern) at the solution in one pass of matrix products, add the
    images with a violated row, re-solve. Either way the returned point meets every row of the full LP, so it
    is the full LP's optimum.
    """
    if not spec.n_preserve:
        return solve_points(spec, solver, options, formulation)
    options = options or SolveOptions()
    deadline = None if options.time_limit is None else time.perf_counter() + options.time_limit
    spent, near = [0.0, 0.0, 0, {}], None
    if formulation in ("ipm", "auto") and len(spec.weights) == 1:  # the IPM takes preserve rows one by one
        full = spec.with_preserve_points(np.arange(spec.n_preserve))
        if ipm_applicable(full):
            sol = _certified(full, original_network(full), solver, options, fallback=False)
            if sol.status != Status.ERROR:
                return sol
            log.info("%s: solving the preserve rounds by column generation", sol.message)
            spent, formulation = [sol.build_time, sol.solve_time, sol.n_solves, sol.iterations], "colgen"
            if deadline is not None:
                options = replace(options, time_limit=max(deadline - time.perf_counter(), 1e-3))
    check_net = original_network(spec.preserve_only())
    active = np.flatnonzero(~points_fixed(check_net, *_zero_change(spec)))  # rows the base model already misses
    for round_ in range(spec.n_preserve + 1):  # each round takes in at least one more image: this always ends
        if deadline is not None:
            options = replace(options, time_limit=max(deadline - time.perf_counter(), 1e-3))
        sol = solve_points(spec.with_preserve_points(active), solver, options, formulation, near)
        spent = [spent[0] + sol.build_time, spent[1] + sol.solve_time, spent[2] + sol.n_solves,
                 {k: spent[3].get(k, 0) + v for k, v in sol.iterations.items()}]
        sol.build_time, sol.solve_time, sol.n_solves, sol.iterations = spent
        sol.preserve_points, sol.preserve_rows = active.size, active.size * (spec.weights[-1].shape[0] - 1)
        if sol.status != Status.OPTIMAL or sol.dW is None:
            return sol
        t0 = time.perf_counter()
        miss = point_violations(check_net, sol.dW, sol.db)
        miss[active] = 0.0
        missing = np.flatnonzero(miss > PRESERVE_TOL)
        sol.build_time += time.perf_counter() - t0
        log.info("preserve round %d: %d of %d preserve images in the LP, %d more violated", round_, active.size,
                 spec.n_preserve, missing.size)
        if not missing.size:
            return sol
        near = (sol.dW, sol.db)  # the next LP's likely binding rows are the ones binding or violated here
        worst_first = missing[np.argsort(-miss[missing], kind="stable")]
        take = max(PRESERVE_BATCH, int(np.ceil(PRESERVE_SHARE * missing.size)))
        active = np.union1d(active, worst_first[:take])
    raise AssertionError("unreachable: every round takes in a preserve image")


def _certified(spec: LPSpec, net, solver: str, options: SolveOptions, near=None, fallback: bool = True) -> LPSolution:
    """solve_certified, with a numerically singular normal system treated like a point without certificate:
    column generation takes over (``fallback``), else status ERROR."""
    try:
        return solve_certified(spec, net, solver=solver, options=options, near=near, fallback=fallback)
    except np.linalg.LinAlgError as err:
        if not fallback:
            return LPSolution(Status.ERROR, None, None, None, None, 0.0, 0.0, "ipm", 0, 0, 0, message=f"ipm: {err}")
        log.warning("structured IPM failed (%s): falling back to column generation", err)
        return solve_colgen(spec, net, solver=solver, options=options)


def _zero_change(spec: LPSpec):
    """(dW, db) of no change at all."""
    n_r = spec.weights[0].shape[0] if spec.rows is None else spec.rows.size
    return np.zeros((n_r, spec.inputs.shape[1])), [np.zeros(n_r)] + [np.zeros(w.shape[0]) for w in spec.weights[1:]]


def solve_points(spec: LPSpec, solver: str = "auto", options: SolveOptions | None = None,
                 formulation: str = "auto", near=None) -> LPSolution:
    """Solve the repair LP over the points of ``spec``; the returned dW/db satisfy every row of that LP.

    formulation: ``straightforward`` (reference, slow at scale), ``colgen`` (column generation over dW with
    lazy rows), ``ipm`` (the certified structured IPM where it applies, else colgen) and ``auto`` = ipm with
    colgen as the exact fallback when the IPM's point is not certified (colgen first for a hidden layer with at
    most COLGEN_POINTS points). All give the same optimum. ``near`` = (dW, db) of a nearby solution: the IPM
    starts with the margin rows binding there.
    """
    if formulation not in FORMULATIONS:
        raise UsageError(f"unknown formulation {formulation!r}; choose one of {', '.join(FORMULATIONS)}")
    options = options or SolveOptions()
    net = original_network(spec)
    if formulation == "straightforward":
        return solve_straightforward(spec, net, solver, options)
    hidden_few = len(spec.weights) > 1 and spec.inputs.shape[0] <= COLGEN_POINTS
    if formulation in ("ipm", "auto") and ipm_applicable(spec) and not (formulation == "auto" and hidden_few):
        return _certified(spec, net, solver, options, near)
    if formulation == "ipm":
        log.info("the ipm formulation does not cover this case (objective %s, %d layers): using colgen",
                 spec.objective, len(spec.weights))
    return solve_colgen(spec, net, solver=solver, options=options)
