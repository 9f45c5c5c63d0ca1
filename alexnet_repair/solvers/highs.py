"""HiGHS backend (highspy, imported lazily): one ``passModel`` from CSC arrays, then ``run``.

highspy reports a rejected option or model by *returning* ``HighsStatus.kError``; every call
here checks it and raises SolverError naming what was rejected.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np

from alexnet_repair.errors import SolverError
from alexnet_repair.solvers import base as pb

log = logging.getLogger(__name__)

# Options each algorithm sets; every entry sets all three keys so switching in a session is clean.
_ALGORITHM_OPTIONS = {
    "auto": {"solver": "choose", "simplex_strategy": 1, "run_crossover": "on"},
    "simplex": {"solver": "simplex", "simplex_strategy": 1, "run_crossover": "on"},
    "primal": {"solver": "simplex", "simplex_strategy": 4, "run_crossover": "on"},
    "ipm": {"solver": "ipx", "simplex_strategy": 1, "run_crossover": "on"},
    "ipm-nocrossover": {"solver": "ipx", "simplex_strategy": 1, "run_crossover": "off"},
    "pdlp": {"solver": "pdlp", "simplex_strategy": 1, "run_crossover": "on"},
}

# HighsModelStatus name -> (Status, note for the message)
_MODEL_STATUS = {
    "kOptimal": (pb.Status.OPTIMAL, ""),
    "kInfeasible": (pb.Status.INFEASIBLE, ""),
    "kUnboundedOrInfeasible": (
        pb.Status.INFEASIBLE,
        "HiGHS found the model infeasible or unbounded without telling which; reported as "
        "infeasible (rerun with extra={'highs:presolve': 'off'} to decide)"),
    "kUnbounded": (pb.Status.UNBOUNDED, ""),
    "kTimeLimit": (pb.Status.TIME_LIMIT, ""),
    "kIterationLimit": (pb.Status.ITERATION_LIMIT, ""),
    "kInterrupt": (pb.Status.INTERRUPTED, ""),
    "kHighsInterrupt": (pb.Status.INTERRUPTED, ""),
}
_WITH_INCUMBENT = (pb.Status.OPTIMAL, pb.Status.TIME_LIMIT, pb.Status.ITERATION_LIMIT,
                   pb.Status.INTERRUPTED)
_FEASIBLE = 2  # HighsInfo.*_solution_status value for a feasible solution
# HiGHS's worker pool is process-wide and sized by the first run's "threads"; a later run
# asking another size fails, so an explicit size re-creates the pool when it differs.
_pool = {"threads": None}


def _import():
    try:
        import highspy
    except ImportError as err:
        detail = "" if getattr(err, "name", None) == "highspy" else f" ({err})"
        raise SolverError(f"highspy is not installed{detail}; install it with `uv sync`") from err
    return highspy


@functools.cache
def _quiet_class():
    """highspy.Highs whose constructor turns output off before it first logs (its banner)."""
    highspy = _import()

    class QuietHighs(highspy.Highs):
        def enableCallbacks(self):  # called by Highs.__init__ before anything is logged
            if not hasattr(self, "_quiet_started"):
                self._quiet_started = True
                self.setOptionValue("output_flag", False)
            super().enableCallbacks()

    return QuietHighs


def version() -> str:
    """"1.16.0"-style version of the installed HiGHS."""
    highspy = _import()
    return f"{highspy.HIGHS_VERSION_MAJOR}.{highspy.HIGHS_VERSION_MINOR}.{highspy.HIGHS_VERSION_PATCH}"


def describe() -> str:
    """What :func:`problem.available_backends` shows: the version."""
    return version()


def _inf(values: np.ndarray, kinf: float) -> np.ndarray:
    """Map ±np.inf to ±kHighsInf (float64 copy only when needed)."""
    values = np.asarray(values, dtype=np.float64)
    if np.isinf(values).any():
        values = np.clip(values, -kinf, kinf)
    return values


def _check(status, what: str) -> None:
    if status == _import().HighsStatus.kError:
        raise SolverError(f"HiGHS rejected {what}")


def _set_option(h, name: str, value) -> None:
    try:
        status = h.setOptionValue(name, value)
    except (TypeError, ValueError) as err:
        raise SolverError(f"HiGHS rejected option {name}={value!r}: {err}") from err
    _check(status, f"option {name}={value!r}")


def _set_algorithm(h, algorithm: str) -> None:
    if algorithm not in _ALGORITHM_OPTIONS:
        raise SolverError(f"unknown algorithm {algorithm!r}; choose from {', '.join(pb.ALGORITHMS)}")
    for name, value in _ALGORITHM_OPTIONS[algorithm].items():
        if value == "ipx" and h.setOptionValue("solver", "ipx") == _import().HighsStatus.kError:
            value = "ipm"  # HiGHS < 1.12 knows IPX only as "ipm"
        _set_option(h, name, value)


def _pass_model(h, highspy, problem: pb.Problem) -> None:
    """One ``passModel`` from the CSC arrays (the array overload: ~15x faster than filling a
    ``HighsLp``, whose ``index_``/``value_`` setters convert element by element)."""
    if problem.nnz >= 2**31:
        raise SolverError(f"{problem.name}: {problem.nnz} nonzeros exceed HiGHS's 32-bit indices")
    kinf, A = highspy.kHighsInf, problem.A
    # all zeros (kContinuous) for an LP: this overload needs a full-length integrality array
    integrality = np.zeros(problem.n_vars, dtype=np.int32)
    if problem.is_mip:
        integrality[problem.integrality] = int(highspy.HighsVarType.kInteger)
    status = h.passModel(
        problem.n_vars, problem.n_rows, problem.nnz, int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize), problem.obj_offset, problem.c,
        _inf(problem.col_lo, kinf), _inf(problem.col_hi, kinf),
        _inf(problem.row_lo, kinf), _inf(problem.row_hi, kinf),
        A.indptr.astype(np.int32, copy=False), A.indices.astype(np.int32, copy=False),
        A.data, integrality)
    _check(status, f"the model {problem.name!r}")
    if problem.start_basis is not None and not problem.is_mip:
        basis = highspy.HighsBasis()
        basis.col_status = [highspy.HighsBasisStatus(int(s)) for s in problem.start_basis[0]]
        basis.row_status = [highspy.HighsBasisStatus(int(s)) for s in problem.start_basis[1]]
        basis.valid = True
        if h.setBasis(basis) == highspy.HighsStatus.kError:  # a start that does not fit: solve cold
            log.debug("highs: start basis of %s rejected", problem.name)


class Session(pb.Session):
    """One ``highspy.Highs`` holding the model; re-running after bound changes starts from
    the previous basis (for simplex; IPX always starts cold)."""

    backend = "highs"

    def __init__(self, problem: pb.Problem, options: pb.SolveOptions) -> None:
        highspy = _import()
        self._highspy = highspy
        self._sizes = (problem.n_vars, problem.n_rows, problem.nnz)
        self._name = problem.name
        self._is_mip = problem.is_mip
        self._algorithm = options.algorithm
        self._time_limit = self._threads = None
        self._h = _quiet_class()()
        self.set_option("verbose", options.verbose)
        for name in ("algorithm", "threads", "time_limit", "mip_gap"):
            if getattr(options, name) is not None:
                self.set_option(name, getattr(options, name))
        for name, value in options.extra_for("highs").items():
            _set_option(self._h, name, value)
        start = time.perf_counter()
        _pass_model(self._h, highspy, problem)
        log.debug("highs: passed %s (%d vars, %d rows, %d nnz) in %.2fs", problem.name,
                  *self._sizes, time.perf_counter() - start)

    def set_option(self, name: str, value) -> None:
        if name == "algorithm":
            _set_algorithm(self._h, value)
            self._algorithm = value
        elif name == "verbose":
            _set_option(self._h, "output_flag", bool(value))
            _set_option(self._h, "log_to_console", bool(value))
        elif name == "threads":
            _set_option(self._h, "threads", 0 if value is None else int(value))
            self._threads = None if value is None else int(value)
        elif name == "time_limit":  # applied per run in solve(): HiGHS's clock is cumulative
            self._time_limit = None if value is None else float(value)
        elif name == "mip_gap":
            _set_option(self._h, "mip_rel_gap", float(value))
        else:
            _set_option(self._h, name, value)

    def set_col_bounds(self, idx, lo, hi) -> None:
        idx, lo, hi = pb.check_bounds_update(self._sizes[0], idx, lo, hi)
        kinf = self._highspy.kHighsInf
        status = self._h.changeColsBounds(idx.size, idx.astype(np.int32), _inf(lo, kinf), _inf(hi, kinf))
        _check(status, "the column bound change")

    def solve(self) -> pb.SolveResult:
        h = self._h
        # HiGHS compares time_limit with its total run time over all runs of this object
        limit = float("inf") if self._time_limit is None else h.getRunTime() + self._time_limit
        _set_option(h, "time_limit", limit)
        if self._threads is not None and _pool["threads"] != self._threads:
            self._highspy.Highs.resetGlobalScheduler(True)
            _pool["threads"] = self._threads
        start = time.perf_counter()
        run_status = h.run()
        runtime = time.perf_counter() - start
        model_status = h.getModelStatus()
        status_text = h.modelStatusToString(model_status)
        if run_status == self._highspy.HighsStatus.kError:
            raise SolverError(f"HiGHS failed on {self._name!r} (model status: {status_text}); "
                              "rerun with verbose output to see HiGHS's log")
        status, note = _MODEL_STATUS.get(model_status.name, (pb.Status.ERROR, ""))
        info = h.getInfo()
        x = objective = duals = basis = None
        if status in _WITH_INCUMBENT and info.primal_solution_status == _FEASIBLE:
            solution = h.getSolution()
            x = np.asarray(solution.col_value, dtype=np.float64)
            objective = float(info.objective_function_value)
            if (status is pb.Status.OPTIMAL and not self._is_mip
                    and info.dual_solution_status == _FEASIBLE):
                duals = np.asarray(solution.row_dual, dtype=np.float64)
                basis = h.getBasis()
                if basis.valid:
                    basis = (np.array([int(s) for s in basis.col_status], dtype=np.int8),
                             np.array([int(s) for s in basis.row_status], dtype=np.int8))
                else:
                    basis = None
        iterations = {
            "simplex": max(int(info.simplex_iteration_count), 0),
            "ipm": max(int(info.ipm_iteration_count), 0),
            "pdlp": max(int(info.pdlp_iteration_count), 0),
            "crossover": max(int(info.crossover_iteration_count), 0),
            "nodes": max(int(info.mip_node_count), 0),
        }
        mip_gap = mip_bound = None
        if self._is_mip:
            mip_bound = float(info.mip_dual_bound)
            mip_gap = float(info.mip_gap) if x is not None else None
        message = f"HiGHS: {status_text}" + (f"; {note}" if note else "")
        log.debug("highs: %s in %.3fs, iterations %s", message, runtime, iterations)
        return pb.SolveResult(
            status=status, objective=objective, x=x, runtime=runtime, iterations=iterations,
            backend="highs", backend_version=version(), n_vars=self._sizes[0],
            n_rows=self._sizes[1], nnz=self._sizes[2], mip_gap=mip_gap, mip_bound=mip_bound,
            message=message, duals=duals, algorithm=self._algorithm, basis=basis)

    def close(self) -> None:
        if self._h is not None:
            self._h.clear()
            self._h = None
