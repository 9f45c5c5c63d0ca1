"""Solver-neutral LP/MILP layer: build a :class:`Problem`, call :func:`solve` or
:func:`open_session`. Backends: "highs" (highspy, default) and "gurobi" (gurobipy >= 13.0.3);
neither is imported until used."""

from alexnet_repair.solvers.problem import (
    ALGORITHMS,
    BACKENDS,
    Problem,
    Session,
    SolveOptions,
    SolveResult,
    Status,
    available_backends,
    choose_backend,
    open_session,
    solve,
)

__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "Problem",
    "Session",
    "SolveOptions",
    "SolveResult",
    "Status",
    "available_backends",
    "choose_backend",
    "open_session",
    "solve",
]
