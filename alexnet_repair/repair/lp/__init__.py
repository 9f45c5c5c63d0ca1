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

from alexnet_repair.repair.lp.colgen import solve_colgen
from alexnet_repair.repair.lp.ipm.certified import ipm_applicable, solve_certified
from alexnet_repair.repair.lp.lazy import VIOLATION_TOL, lazy_rounds
from alexnet_repair.repair.lp.network import original_network, streamed_violations
from alexnet_repair.repair.lp.spec import FORMULATIONS, OBJECTIVES, LPSolution, LPSpec, check_formulation
from alexnet_repair.repair.lp.straightforward import solve_straightforward
from alexnet_repair.solvers import SolveOptions, Status

log = logging.getLogger(__name__)

COLGEN_POINTS = 30  # auto: a hidden layer with at most this many points goes to column generation first (the IPM's
#                     dense system costs more than colgen's few rounds there; measured: bench/README.md)

__all__ = ["FORMULATIONS", "OBJECTIVES", "LPSolution", "LPSpec", "solve_repair_lp"]


def uses_builtin_ipm(spec: LPSpec, solver: str, formulation: str, algorithm: str = "auto") -> bool:
    """Whether the toolkit's own certified IPM (solver ``builtin-ipm``) is the first to solve ``spec``
    (docs/DESIGN.md, "Formulations"): only when no external solver or solver algorithm was named, or with
    ``--formulation ipm``. A user who names ``--solver highs|gurobi`` or an ``--algorithm`` gets that solver."""
    if formulation not in ("ipm", "auto") or solver != "auto" or algorithm != "auto" or not ipm_applicable(spec):
        return False
    return formulation == "ipm" or not (len(spec.weights) > 1 and spec.inputs.shape[0] <= COLGEN_POINTS)


def solve_repair_lp(spec: LPSpec, solver: str = "auto", options: SolveOptions | None = None,
                    formulation: str = "auto") -> LPSolution:
    """Solve the repair LP of ``spec``, preserve set included; see :func:`solve_points` for ``formulation``.

    Preserve images enter lazily (lazy.py). Where the certified IPM solves (:func:`uses_builtin_ipm`), on the
    last layer, it takes every preserve image as a point whose rows join one by one; its certificate checks all
    N x (C-1) rows. Otherwise (or when the IPM gives no certificate) whole images join the LP in lazy rounds.
    Either way the returned point meets every row of the full LP, so it is the full LP's optimum.
    """
    options = options or SolveOptions()
    check_formulation(formulation, solver, options.algorithm)
    if not spec.n_preserve:
        return solve_points(spec, solver, options, formulation)
    deadline = None if options.time_limit is None else time.perf_counter() + options.time_limit
    spent = [0.0, 0.0, 0, {}]
    if len(spec.weights) == 1:  # the IPM takes preserve rows one by one
        full = spec.with_preserve_points(np.arange(spec.n_preserve))
        if uses_builtin_ipm(full, solver, formulation, options.algorithm):
            sol = _certified(full, original_network(full), solver, options, fallback=False)
            if sol.status != Status.ERROR:
                return sol
            log.info("%s: solving the preserve rounds by column generation", sol.message)
            spent, formulation = [sol.build_time, sol.solve_time, sol.n_solves, sol.iterations], "colgen"
    preserve = spec.preserve_only()
    near = [None]  # the last round's (dW, db): the next LP's likely binding rows are the ones binding there

    def solve(active, _round):
        opts = options if deadline is None else replace(options, time_limit=max(deadline - time.perf_counter(), 1e-3))
        sol = solve_points(spec.with_preserve_points(active), solver, opts, formulation, near[0])
        spent[:] = [spent[0] + sol.build_time, spent[1] + sol.solve_time, spent[2] + sol.n_solves,
                    {k: spent[3].get(k, 0) + v for k, v in sol.iterations.items()}]
        sol.build_time, sol.solve_time, sol.n_solves, sol.iterations = spent[0], spent[1], spent[2], dict(spent[3])
        sol.preserve_points, sol.preserve_rows = active.size, active.size * (spec.weights[-1].shape[0] - 1)
        near[0] = (sol.dW, sol.db)
        return sol

    def violations(sol):
        t0 = time.perf_counter()
        miss = streamed_violations(preserve, sol.dW, sol.db)
        spent[0] += time.perf_counter() - t0
        return miss

    start = np.flatnonzero(streamed_violations(preserve, *_zero_change(spec)) > VIOLATION_TOL)  # missed already
    sol, _ = lazy_rounds(solve, violations, start, stop=lambda s: s.status != Status.OPTIMAL or s.dW is None,
                         objective=lambda s: s.objective)
    sol.build_time = spent[0]  # the last check included
    return sol


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
    lazy rows), ``ipm`` (the certified structured IPM where it applies, else colgen) and ``auto``: the IPM where
    :func:`uses_builtin_ipm` says so, with colgen as the exact fallback when its point is not certified, else
    colgen with ``solver``. All give the same optimum. ``near`` = (dW, db) of a nearby solution: the IPM
    starts with the margin rows binding there.
    """
    options = options or SolveOptions()
    check_formulation(formulation, solver, options.algorithm)
    net = original_network(spec)
    if formulation == "straightforward":
        return solve_straightforward(spec, net, solver, options)
    if uses_builtin_ipm(spec, solver, formulation, options.algorithm):
        return _certified(spec, net, solver, options, near)
    if formulation == "ipm":
        log.info("the ipm formulation does not cover this case (objective %s, %d layers): using colgen",
                 spec.objective, len(spec.weights))
    return solve_colgen(spec, net, solver=solver, options=options)
