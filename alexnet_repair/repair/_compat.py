"""TEMPORARY stand-in for alexnet_repair.solvers until it lands (prototyping only)."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

try:
    from alexnet_repair.solvers import Problem, SolveOptions, SolveResult, Status, solve  # noqa: F401
except ImportError:

    class Status(str, enum.Enum):
        OPTIMAL = "optimal"
        INFEASIBLE = "infeasible"
        UNBOUNDED = "unbounded"
        TIME_LIMIT = "time_limit"
        ITERATION_LIMIT = "iteration_limit"
        ERROR = "error"

    @dataclass
    class Problem:
        c: np.ndarray
        A: sp.csc_matrix
        row_lo: np.ndarray
        row_hi: np.ndarray
        col_lo: np.ndarray
        col_hi: np.ndarray
        integrality: np.ndarray | None = None
        obj_offset: float = 0.0
        name: str = "problem"

    @dataclass
    class SolveOptions:
        algorithm: str = "auto"
        threads: int | None = None
        time_limit: float | None = None
        mip_gap: float | None = None
        verbose: bool = False
        extra: dict = field(default_factory=dict)

    @dataclass
    class SolveResult:
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
        duals: dict | None = None

    def solve(problem, solver="auto", options=None):
        import highspy

        options = options or SolveOptions()
        h = highspy.Highs()
        h.setOptionValue("output_flag", bool(options.verbose))
        alg = {"auto": "choose", "simplex": "simplex", "ipm": "ipm", "pdlp": "pdlp", "primal": "simplex",
               "ipm-nocrossover": "ipm"}[options.algorithm]
        h.setOptionValue("solver", alg)
        if options.algorithm == "primal":
            h.setOptionValue("simplex_strategy", 4)
        if options.algorithm == "ipm-nocrossover":
            h.setOptionValue("run_crossover", "off")
        if options.threads:
            h.setOptionValue("threads", int(options.threads))
        if options.time_limit is not None:
            h.setOptionValue("time_limit", float(options.time_limit))
        for k, v in options.extra.items():
            h.setOptionValue(k, v)
        lp = highspy.HighsLp()
        A = sp.csc_matrix(problem.A)
        lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
        lp.col_cost_ = np.asarray(problem.c, float)
        lp.col_lower_ = np.asarray(problem.col_lo, float)
        lp.col_upper_ = np.asarray(problem.col_hi, float)
        lp.row_lower_ = np.asarray(problem.row_lo, float)
        lp.row_upper_ = np.asarray(problem.row_hi, float)
        lp.offset_ = float(problem.obj_offset)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(float)
        h.passModel(lp)
        t0 = time.perf_counter()
        h.run()
        rt = time.perf_counter() - t0
        ms = h.getModelStatus()
        M = highspy.HighsModelStatus
        st = {M.kOptimal: Status.OPTIMAL, M.kInfeasible: Status.INFEASIBLE, M.kUnbounded: Status.UNBOUNDED,
              M.kTimeLimit: Status.TIME_LIMIT, M.kIterationLimit: Status.ITERATION_LIMIT}.get(ms, Status.ERROR)
        info = h.getInfo()
        x = duals = obj = None
        if st == Status.OPTIMAL:
            sol = h.getSolution()
            x = np.array(sol.col_value)
            duals = {"row": np.array(sol.row_dual), "col": np.array(sol.col_dual)}
            obj = h.getObjectiveValue()
        return SolveResult(st, obj, x, rt, {"simplex": info.simplex_iteration_count, "ipm": info.ipm_iteration_count},
                           "highs", "1.16", A.shape[1], A.shape[0], A.nnz, message=h.modelStatusToString(ms),
                           duals=duals)
