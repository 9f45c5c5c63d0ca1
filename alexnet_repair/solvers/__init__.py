"""Solver-neutral LP/MILP layer: build a :class:`Problem`, call :func:`solve` or
:func:`open_session`. Backends: "highs" (highspy, default) and "gurobi" (gurobipy >= 13.0.3);
neither is imported until used. ``base`` holds the types; this module chooses and dispatches."""

from __future__ import annotations

import logging

from alexnet_repair.errors import SolverError
from alexnet_repair.solvers.base import (ALGORITHMS, BACKENDS, Problem, Session, SolveOptions, SolveResult,
                                         Status)

log = logging.getLogger(__name__)

__all__ = ["ALGORITHMS", "BACKENDS", "Problem", "Session", "SolveOptions", "SolveResult", "Status",
           "available_backends", "choose_backend", "open_session", "solve"]


def _backend_module(name: str):
    if name == "highs":
        from alexnet_repair.solvers import highs
        return highs
    from alexnet_repair.solvers import gurobi
    return gurobi


def choose_backend(problem: Problem, requested: str = "auto") -> str:
    """"highs" or "gurobi". "auto" picks Gurobi when gurobipy >= 13.0.3 imports and its
    licence can hold ``problem``, else HiGHS; the choice and reason are logged at INFO."""
    if requested in BACKENDS:
        return requested
    if requested != "auto":
        raise SolverError(f"unknown solver {requested!r}; choose from auto, {', '.join(BACKENDS)}")
    from alexnet_repair.solvers import gurobi
    fits, reason = gurobi.fits_licence(problem)
    backend = "gurobi" if fits else "highs"
    log.info("solver auto -> %s (%s)", backend, reason)
    return backend


def available_backends() -> dict[str, str]:
    """Backend name -> version (gurobi: with its licence limit), or "unavailable: <reason>"."""
    out = {}
    for name in BACKENDS:
        try:
            out[name] = _backend_module(name).describe()
        except SolverError as err:
            out[name] = f"unavailable: {err}"
    return out


def solve(problem: Problem, solver: str = "auto", options: SolveOptions | None = None) -> SolveResult:
    """Solve ``problem`` once with backend ``solver`` ("auto", "highs", "gurobi"), then free the backend's model."""
    with open_session(problem, solver, options) as session:
        return session.solve()


def open_session(problem: Problem, solver: str = "auto", options: SolveOptions | None = None) -> Session:
    """Build ``problem`` in a backend and keep it for repeated, warm-started solves."""
    options = options or SolveOptions()
    options.check()
    problem.validate()
    backend = choose_backend(problem, solver)
    return _backend_module(backend).Session(problem, options)
