"""Solver-neutral LP/MILP: the problem, options, result and session types, and dispatch.

A problem is ``minimise c @ x + obj_offset`` subject to ``row_lo <= A @ x <= row_hi`` and
``col_lo <= x <= col_hi``, with ``x[j]`` integer where ``integrality[j]``. Infinite bounds are
``-np.inf`` / ``+np.inf``. Backends live in :mod:`.highs` and :mod:`.gurobi`; each imports its
package only when used, so this module needs neither.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from alexnet_repair.errors import SolverError

log = logging.getLogger(__name__)

BACKENDS = ("highs", "gurobi")
BASIS_LOWER, BASIS_BASIC, BASIS_UPPER, BASIS_ZERO = 0, 1, 2, 3  # simplex basis status codes (HiGHS's)
ALGORITHMS = ("auto", "simplex", "primal", "ipm", "ipm-nocrossover", "pdlp")


class Status(str, enum.Enum):
    """Outcome of a solve; the values are the lowercase strings written to results files."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"
    ITERATION_LIMIT = "iteration_limit"
    INTERRUPTED = "interrupted"
    ERROR = "error"


@dataclass
class Problem:
    """``min c@x + obj_offset  s.t.  row_lo <= A@x <= row_hi,  col_lo <= x <= col_hi``.

    Shapes: ``c``, ``col_lo``, ``col_hi``, ``integrality``: (n,); ``A``: (m, n) CSC;
    ``row_lo``, ``row_hi``: (m,). All float64 (``integrality`` bool, None = pure LP).
    ``__post_init__`` converts array-likes to those types without copying when they already fit.
    """

    c: np.ndarray
    A: sp.csc_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    integrality: np.ndarray | None = None
    obj_offset: float = 0.0
    name: str = "problem"
    # optional simplex start (HiGHS; others ignore it): (column status (n,), row status (m,)) as int8 codes
    # BASIS_LOWER / BASIS_BASIC / BASIS_UPPER / BASIS_ZERO, e.g. a previous result's ``basis`` extended
    start_basis: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        for attr in ("c", "row_lo", "row_hi", "col_lo", "col_hi"):
            setattr(self, attr, np.asarray(getattr(self, attr), dtype=np.float64))
        if not (sp.issparse(self.A) and self.A.format == "csc" and self.A.dtype == np.float64):
            self.A = sp.csc_matrix(self.A, dtype=np.float64)
        if not self.A.has_canonical_format:  # HiGHS rejects duplicate entries
            self.A = self.A.copy()
            self.A.sum_duplicates()
        if self.integrality is not None:
            self.integrality = np.asarray(self.integrality, dtype=bool)
        self.obj_offset = float(self.obj_offset)

    @property
    def n_vars(self) -> int:
        return int(self.c.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.A.nnz)

    @property
    def is_mip(self) -> bool:
        return self.integrality is not None and bool(self.integrality.any())

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistency (shapes, NaN, lo > hi, bad infinities)."""
        n, m = self.n_vars, self.n_rows
        if self.c.ndim != 1:
            raise ValueError(f"{self.name}: c must be 1-D, got shape {self.c.shape}")
        if self.A.ndim != 2 or self.A.shape[1] != n:
            raise ValueError(f"{self.name}: A has shape {self.A.shape}, expected (m, {n})")
        if not np.isfinite(self.c).all() or not np.isfinite(self.A.data).all():
            raise ValueError(f"{self.name}: c and A must be finite")
        if not np.isfinite(self.obj_offset):
            raise ValueError(f"{self.name}: obj_offset must be finite")
        for kind, size in (("row", m), ("col", n)):
            lo, hi = getattr(self, f"{kind}_lo"), getattr(self, f"{kind}_hi")
            if lo.shape != (size,) or hi.shape != (size,):
                raise ValueError(f"{self.name}: {kind}_lo/{kind}_hi must have shape ({size},), "
                                 f"got {lo.shape} and {hi.shape}")
            if np.isnan(lo).any() or np.isnan(hi).any():
                raise ValueError(f"{self.name}: {kind} bounds contain NaN")
            if (lo == np.inf).any() or (hi == -np.inf).any():
                raise ValueError(f"{self.name}: {kind}_lo holds +inf or {kind}_hi holds -inf")
            bad = np.flatnonzero(lo > hi)
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"{self.name}: {kind} {i} has lo {lo[i]} > hi {hi[i]} "
                                 f"({bad.size} such {kind}s)")
        if self.integrality is not None and self.integrality.shape != (n,):
            raise ValueError(f"{self.name}: integrality must have shape ({n},), "
                             f"got {self.integrality.shape}")


@dataclass
class SolveOptions:
    """Backend-neutral options. ``time_limit`` in seconds; ``mip_gap`` relative.

    ``algorithm``: "auto", "simplex" (dual), "primal", "ipm" (with crossover),
    "ipm-nocrossover", "pdlp" (first-order: its "optimal" is only approximately feasible).
    ``extra``: raw backend options. A key "highs:NAME" or "gurobi:NAME" goes only to that
    backend; a plain "NAME" goes to whichever backend runs. Rejected ones raise SolverError.
    """

    algorithm: str = "auto"
    threads: int | None = None
    time_limit: float | None = None
    mip_gap: float | None = None
    verbose: bool = False
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        """Raise SolverError for an unknown algorithm or a non-positive limit."""
        if self.algorithm not in ALGORITHMS:
            raise SolverError(f"unknown algorithm {self.algorithm!r}; "
                              f"choose from {', '.join(ALGORITHMS)}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise SolverError(f"time limit must be positive, got {self.time_limit}")
        if self.threads is not None and self.threads < 1:
            raise SolverError(f"threads must be >= 1, got {self.threads}")

    def extra_for(self, backend: str) -> dict:
        """The ``extra`` options meant for ``backend``, prefixes stripped."""
        out = {}
        for key, value in self.extra.items():
            prefix, sep, name = str(key).partition(":")
            if not sep:
                out[key] = value
            elif prefix == backend:
                out[name] = value
            elif prefix not in BACKENDS:
                raise SolverError(f"extra option {key!r}: unknown backend prefix {prefix!r}")
        return out


@dataclass
class SolveResult:
    """What a solve returned. ``x`` (n,) and ``objective`` (including ``obj_offset``) are None
    when there is no primal feasible point (always so for infeasible/unbounded/error; on a time
    or iteration limit only if the solver found none). ``duals`` (m,) are row duals
    d(objective)/d(row bound) of an optimal LP (>= 0 at an active lower bound, <= 0 at an
    active upper one), else None. ``runtime`` is solver wall clock in seconds."""

    status: Status
    objective: float | None
    x: np.ndarray | None
    runtime: float
    iterations: dict
    backend: str
    backend_version: str
    n_vars: int
    n_rows: int
    nnz: int
    mip_gap: float | None = None
    mip_bound: float | None = None
    message: str = ""
    duals: np.ndarray | None = None
    algorithm: str = "auto"
    basis: tuple[np.ndarray, np.ndarray] | None = None  # (column status, row status) of an optimal LP (HiGHS)

    @property
    def has_solution(self) -> bool:
        return self.x is not None

    def summary(self) -> dict:
        """JSON-ready scalars (no x / duals)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("x", "duals")}
        out["status"] = self.status.value
        out["iterations"] = dict(self.iterations)
        return out


class Session:
    """A model kept alive for repeated solves (bound changes re-use the last basis).

    Use as a context manager or call :meth:`close`. Backends implement the methods.
    """

    backend: str = ""

    def solve(self) -> SolveResult:
        raise NotImplementedError

    def set_col_bounds(self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Set bounds of columns ``idx`` (k,) to ``lo``/``hi`` (k,) (±inf allowed)."""
        raise NotImplementedError

    def set_option(self, name: str, value) -> None:
        """"algorithm", "threads", "time_limit", "mip_gap", "verbose", or a raw backend option."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_bounds_update(n: int, idx, lo, hi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a column-bound update for sessions: (k,) int indices in [0, n), lo <= hi."""
    idx = np.asarray(idx, dtype=np.int64).ravel()
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), idx.shape)
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), idx.shape)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"column index out of range [0, {n})")
    if np.isnan(lo).any() or np.isnan(hi).any() or (lo > hi).any():
        raise ValueError("column bounds contain NaN or lo > hi")
    return idx, lo, hi
