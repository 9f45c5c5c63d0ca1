"""Gurobi backend (gurobipy >= 13.0.3, imported lazily) with the matrix API.

Ranged rows ``lo < a@x < hi`` become two constraints (``>= lo`` and ``<= hi``), so the Gurobi
model can have more constraints than the problem has rows (see :func:`model_size`). The pip
wheel's bundled licence holds at most 2000 variables and 2000 constraints; it is probed once
per process (:func:`licence_limit`).
"""

from __future__ import annotations

import logging

import numpy as np

from alexnet_repair.errors import SolverError
from alexnet_repair.solvers import base as pb

log = logging.getLogger(__name__)

MIN_VERSION = (13, 0, 3)
SIZE_LIMIT = 2000          # the pip wheel's size-limited licence: variables and constraints each
_ERR_SIZE_LIMIT = 10010    # GRB.Error.SIZE_LIMIT_EXCEEDED
_ERR_LICENCE = {10009, 10022, 10023, 10028, 10030}  # no licence, network, rejected, cloud, worker
_licence_cache: dict = {}  # "limit" -> int | None, or "error" -> message

# algorithm -> (Method, Crossover); "pdlp" is filled in from GRB.METHOD_PDHG when it exists
_METHODS = {"auto": (-1, -1), "simplex": (1, -1), "primal": (0, -1), "ipm": (2, -1),
            "ipm-nocrossover": (2, 0)}
_STATUS = {2: (pb.Status.OPTIMAL, ""), 3: (pb.Status.INFEASIBLE, ""),
           4: (pb.Status.INFEASIBLE, "Gurobi found the model infeasible or unbounded without "
               "telling which; reported as infeasible (rerun with "
               "extra={'gurobi:DualReductions': 0} to decide)"),
           5: (pb.Status.UNBOUNDED, ""), 7: (pb.Status.ITERATION_LIMIT, ""),
           9: (pb.Status.TIME_LIMIT, ""), 11: (pb.Status.INTERRUPTED, "")}
_WITH_INCUMBENT = (pb.Status.OPTIMAL, pb.Status.TIME_LIMIT, pb.Status.ITERATION_LIMIT,
                   pb.Status.INTERRUPTED)


def _import():
    try:
        import gurobipy
    except ImportError as err:
        detail = "" if getattr(err, "name", None) == "gurobipy" else f" ({err})"
        raise SolverError(f"gurobipy is not installed{detail}; use --solver highs") from err
    found = tuple(gurobipy.gurobi.version())
    if found < MIN_VERSION:
        raise SolverError(f"gurobipy {'.'.join(map(str, found))} is too old (the 12.x wheels' "
                          "bundled licence expired on 2026-11-23): install gurobipy>=13.0.3 "
                          "or use --solver highs")
    return gurobipy


def version() -> str:
    """"13.0.3"-style version of the installed gurobipy (SolverError when unusable)."""
    return ".".join(map(str, _import().gurobi.version()))


def describe() -> str:
    """Version and licence, e.g. "13.0.3 (size-limited licence: 2000 variables/constraints)"."""
    found, limit = version(), licence_limit()
    return found if limit is None else f"{found} (size-limited licence: {limit} variables/constraints)"


def _licence_error(err) -> SolverError:
    return SolverError(f"Gurobi licence is missing or expired ({err}): use --solver highs "
                       "or install a valid Gurobi licence")


def _too_large(n_vars: int, n_constrs: int, limit: int) -> SolverError:
    return SolverError(f"Gurobi's size-limited licence cannot hold this model ({n_vars} variables, "
                       f"{n_constrs} constraints; limit {limit} each): use --solver highs or "
                       "install a full Gurobi licence")


def _env(gp, verbose: bool):
    """A private, started environment: no banner unless ``verbose``."""
    env = gp.Env(empty=True)
    try:
        env.setParam("OutputFlag", int(bool(verbose)))
        env.start()
    except gp.GurobiError as err:
        env.dispose()
        if err.errno in _ERR_LICENCE:
            raise _licence_error(err) from err
        raise SolverError(f"Gurobi could not start: {err}") from err
    return env


def licence_limit() -> int | None:
    """Size limit of the licence (variables and constraints each), None if unrestricted.

    Probed once per process by optimising an empty model one variable over the bundled
    licence's limit. Raises SolverError when gurobipy or its licence is unusable."""
    if "error" in _licence_cache:
        raise SolverError(_licence_cache["error"])
    if "limit" not in _licence_cache:
        gp = _import()
        try:
            env = _env(gp, verbose=False)
        except SolverError as err:
            _licence_cache["error"] = str(err)
            raise
        try:
            with gp.Model("licence_probe", env=env) as model:
                model.addMVar(SIZE_LIMIT + 1)
                model.optimize()
            _licence_cache["limit"] = None
        except gp.GurobiError as err:
            if err.errno != _ERR_SIZE_LIMIT:
                _licence_cache["error"] = str(_licence_error(err))
                raise SolverError(_licence_cache["error"]) from err
            _licence_cache["limit"] = SIZE_LIMIT
        finally:
            env.dispose()
        log.debug("gurobi licence limit: %s", _licence_cache["limit"])
    return _licence_cache["limit"]


def _row_blocks(problem: pb.Problem) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(sense, row indices, rhs) for the equality, >= and <= constraint blocks."""
    lo, hi = problem.row_lo, problem.row_hi
    eq = lo == hi
    blocks = [("=", np.flatnonzero(eq), lo[eq]),
              (">", np.flatnonzero(np.isfinite(lo) & ~eq), lo[np.isfinite(lo) & ~eq]),
              ("<", np.flatnonzero(np.isfinite(hi) & ~eq), hi[np.isfinite(hi) & ~eq])]
    return [block for block in blocks if block[1].size]


def model_size(problem: pb.Problem) -> tuple[int, int]:
    """(variables, constraints) of the Gurobi model built for ``problem``."""
    return problem.n_vars, sum(idx.size for _, idx, _ in _row_blocks(problem))


def fits_licence(problem: pb.Problem) -> tuple[bool, str]:
    """Whether gurobipy is usable and its licence holds ``problem``, and why (one line)."""
    try:
        limit = licence_limit()
        found = version()
    except SolverError as err:
        return False, str(err)
    n_vars, n_constrs = model_size(problem)
    if limit is None:
        return True, f"gurobipy {found} with an unrestricted licence"
    size = f"{n_vars} variables, {n_constrs} constraints"
    if n_vars <= limit and n_constrs <= limit:
        return True, f"gurobipy {found}: {size} fit its size-limited licence"
    return False, f"{size} exceed Gurobi's size-limited licence ({limit} each)"


class Session(pb.Session):
    """One gurobipy model in a private environment; after bound changes Gurobi re-optimises
    from the previous basis."""

    backend = "gurobi"

    def __init__(self, problem: pb.Problem, options: pb.SolveOptions) -> None:
        gp = self._gp = _import()
        self._name, self._is_mip = problem.name, problem.is_mip
        self._sizes = (problem.n_vars, problem.n_rows, problem.nnz)
        limit = licence_limit()
        if limit is not None and max(model_size(problem)) > limit:
            raise _too_large(*model_size(problem), limit)
        self._algorithm = options.algorithm
        self._env = _env(gp, options.verbose)
        self._model = None
        try:
            self._build(problem)
            for name in ("algorithm", "threads", "time_limit", "mip_gap"):
                if getattr(options, name) is not None:
                    self.set_option(name, getattr(options, name))
            for name, value in options.extra_for("gurobi").items():
                self.set_option(name, value)
        except BaseException:
            self.close()
            raise

    def _build(self, problem: pb.Problem) -> None:
        gp, inf = self._gp, self._gp.GRB.INFINITY
        model = self._model = gp.Model(problem.name, env=self._env)
        vtype = gp.GRB.CONTINUOUS
        if problem.is_mip:
            vtype = np.where(problem.integrality, gp.GRB.INTEGER, gp.GRB.CONTINUOUS)
        self._x = model.addMVar(problem.n_vars, lb=np.clip(problem.col_lo, -inf, inf),
                                ub=np.clip(problem.col_hi, -inf, inf), obj=problem.c, vtype=vtype)
        model.ObjCon = problem.obj_offset
        rows = problem.A.tocsr()
        self._blocks = [(idx, model.addMConstr(rows[idx], self._x, sense, rhs))
                        for sense, idx, rhs in _row_blocks(problem)]

    def _set_param(self, name: str, value) -> None:
        try:
            self._model.setParam(name, value)
        except (self._gp.GurobiError, TypeError, ValueError) as err:
            raise SolverError(f"Gurobi rejected parameter {name}={value!r}: {err}") from err

    def set_option(self, name: str, value) -> None:
        if name == "algorithm":
            methods = dict(_METHODS)
            if hasattr(self._gp.GRB, "METHOD_PDHG"):
                methods["pdlp"] = (self._gp.GRB.METHOD_PDHG, -1)
            if value not in methods:
                raise SolverError(f"algorithm {value!r} is not supported by gurobi {version()}; "
                                  f"choose from {', '.join(methods)}")
            method, crossover = methods[value]
            self._set_param("Method", method)
            self._set_param("Crossover", crossover)
            self._algorithm = value
        elif name == "verbose":
            self._set_param("OutputFlag", int(bool(value)))
        elif name == "threads":
            self._set_param("Threads", 0 if value is None else int(value))
        elif name == "time_limit":
            self._set_param("TimeLimit", self._gp.GRB.INFINITY if value is None else float(value))
        elif name == "mip_gap":
            self._set_param("MIPGap", float(value))
        else:
            self._set_param(name, value)

    def set_col_bounds(self, idx, lo, hi) -> None:
        idx, lo, hi = pb.check_bounds_update(self._sizes[0], idx, lo, hi)
        inf = self._gp.GRB.INFINITY
        self._x[idx].lb = np.clip(lo, -inf, inf)
        self._x[idx].ub = np.clip(hi, -inf, inf)

    def _attr(self, name: str, default=None):
        try:
            return self._model.getAttr(name)
        except (self._gp.GurobiError, AttributeError):
            return default

    def solve(self) -> pb.SolveResult:
        gp, model = self._gp, self._model
        try:
            model.optimize()
        except gp.GurobiError as err:
            if err.errno == _ERR_SIZE_LIMIT:
                raise _too_large(model.NumVars, model.NumConstrs, SIZE_LIMIT) from err
            if err.errno in _ERR_LICENCE:
                raise _licence_error(err) from err
            raise SolverError(f"Gurobi failed on {self._name!r}: {err}") from err
        code = model.Status
        status, note = _STATUS.get(code, (pb.Status.ERROR, ""))
        names = {getattr(gp.GRB.Status, k): k for k in dir(gp.GRB.Status) if k.isupper()}
        x = objective = duals = mip_gap = mip_bound = None
        if status in _WITH_INCUMBENT and model.SolCount > 0:
            x = np.asarray(self._x.X, dtype=np.float64)
            objective = float(model.ObjVal)
            if status is pb.Status.OPTIMAL and not self._is_mip:
                duals = self._duals()
        if self._is_mip:
            mip_bound = self._attr("ObjBound")
            mip_gap = self._attr("MIPGap") if x is not None else None
        iterations = {key: int(self._attr(attr, 0)) for key, attr in (
            ("simplex", "IterCount"), ("ipm", "BarIterCount"), ("pdlp", "PDHGIterCount"),
            ("nodes", "NodeCount"))}
        message = f"Gurobi: {names.get(code, code)}" + (f"; {note}" if note else "")
        return pb.SolveResult(
            status=status, objective=objective, x=x, runtime=float(model.Runtime),
            iterations=iterations, backend="gurobi", backend_version=version(),
            n_vars=self._sizes[0], n_rows=self._sizes[1], nnz=self._sizes[2], mip_gap=mip_gap,
            mip_bound=mip_bound, message=message, duals=duals, algorithm=self._algorithm)

    def _duals(self) -> np.ndarray | None:
        duals = np.zeros(self._sizes[1])
        try:
            for idx, constrs in self._blocks:
                duals[idx] += constrs.Pi  # a ranged row: at most one of its two is non-zero
        except (self._gp.GurobiError, AttributeError):
            return None
        return duals

    def close(self) -> None:
        if self._model is not None:
            self._model.dispose()
            self._model = None
        if self._env is not None:
            self._env.dispose()
            self._env = None
