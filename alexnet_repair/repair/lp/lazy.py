"""The lazy-row loop (docs/DESIGN.md, "Lazy rows"): the one loop that brings rows into the repair LP only once
they are violated, run by every formulation's preserve set, the max-fixed MILP and the certified IPM's margin-row
rounds; and its tuning constants, each with what it trades.

A round solves the LP over the active candidates (preserve images with all their rows, or single margin rows in
the IPM), checks every candidate at the solution in one streamed pass, and adds the violated ones, most violated
first, at most a cap per round. When no candidate is violated the solution meets every row of the full LP while
being optimal for a relaxation of it, so it is the full LP's optimum.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable

import numpy as np

from alexnet_repair.progress_log import progress


VIOLATION_TOL = 1e-7  # a row is violated when it misses by more: HiGHS's primal feasibility tolerance (and the IPM
#                       certificate's FEAS_TOL); a smaller one would chase the solvers' own rounding
IMAGES_PER_ROUND = 100  # preserve images (each with all its rows and, on a hidden layer, its pattern) that join a
#                         round at most, the most violated first: more per round means fewer rounds but LPs larger
#                         than the optimum needs (most violated images stop being violated once a few join)
CHECK_CHUNK = 4096  # points per chunk of the all-rows check: its memory is about CHECK_CHUNK x (layer widths)
#                     float64 values, whatever the preserve set's size; larger chunks only save Python overhead

# The certified IPM's margin rows (ipm/certified.py): rows join one at a time, not whole images.
ALL_ROWS = 2500  # up to this many edit margin rows the first IPM round holds them all (a 2500^2 Schur block is
#                  cheap); beyond it each point starts with its INIT_ROWS most binding rows and the rest join lazily
INIT_ROWS = 1
NEAR_ROWS = 0.05  # an edit point's row joins while its slack < NEAR_ROWS * margin (violated or about to bind):
#                   joining rows just before they bind saves rounds, joining slack rows makes every round larger
NEAR_PRESERVE = 0.05  # the same for preserve points' rows
PRESERVE_PER_ROUND = 1  # rows of one preserve point that join per round (its most violated ones): a point's other
#                         rows rarely bind once its worst one is in
PRESERVE_ROWS = 1000  # preserve rows that join a round at most, the most violated first: one round that takes in
#                       thousands of rows at once grows the dense Schur system past what the rows need
DROP_SLACK = 0.25  # lazy rows leave again while their slack > DROP_SLACK * margin (not binding: the optimum stays)
DROP_ROUNDS = 4  # rows leave only in the first DROP_ROUNDS rounds; after that rows only join, so the loop ends
MAX_ROUNDS = 6  # without preserve points: IPM rounds before column generation takes over
EARLY = 1e-4  # an IPM round ends as soon as its iterate is this accurate and misses a row of the exact LP: the
#               next round starts from it, so solving a relaxation that is about to change to 1e-8 is wasted


def most_violated(miss: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the candidates with ``miss`` > VIOLATION_TOL, the most violated first, at most ``limit``."""
    missing = np.flatnonzero(miss > VIOLATION_TOL)
    order = missing[np.argsort(-miss[missing], kind="stable")]
    return order if limit is None else order[:limit]


def lazy_rounds(solve: Callable, violations: Callable, active: np.ndarray, *, limit: int | None = IMAGES_PER_ROUND,
                select: Callable | None = None, stop: Callable | None = None, drop: Callable | None = None,
                objective: Callable | None = None, what: str = "preserve images", max_rounds: int | None = None):
    """Run rounds until no candidate outside ``active`` is violated; returns (last solution, rounds run).

    ``solve(active, round)`` -> solution; ``stop(solution)`` -> True when it is final whatever the rows (failed,
    certified, out of time); ``violations(solution)`` -> (n,) by how much each candidate misses (0 where it
    holds); ``select(solution, miss, active)`` -> the candidates to add (default: :func:`most_violated` of those
    outside ``active``, at most ``limit``); ``drop(solution, active, round)`` -> the active set with rows that may
    leave removed (before the new ones join). ``objective(solution)`` is shown in the progress line.
    """
    active = np.asarray(active, dtype=np.int64)
    start = time.perf_counter()
    for round_ in itertools.count():
        sol = solve(active, round_)
        if stop is not None and stop(sol):
            return sol, round_ + 1
        miss = np.array(violations(sol), dtype=np.float64)
        outside = miss.copy()
        outside[active] = 0.0
        new = most_violated(outside, limit) if select is None else np.asarray(select(sol, outside, active))
        value = "" if objective is None else f", objective {objective(sol):.6g}"
        progress.info("round %d: %d %s in the LP, %d violated outside it%s, %.1f s", round_ + 1, active.size, what,
                      int((outside > VIOLATION_TOL).sum()), value, time.perf_counter() - start)
        if not new.size or (max_rounds is not None and round_ + 1 >= max_rounds):
            return sol, round_ + 1
        if drop is not None:
            active = drop(sol, active, round_)
        active = np.union1d(active, new)
    raise AssertionError("unreachable")
