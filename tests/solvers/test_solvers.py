"""Known-answer tests for alexnet_repair.solvers (HiGHS always; Gurobi when licensed)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from alexnet_repair.errors import SolverError
from alexnet_repair.solvers import (
    Problem,
    SolveOptions,
    Status,
    available_backends,
    choose_backend,
    open_session,
    solve,
)

INF = np.inf
ROOT = Path(__file__).resolve().parents[2]
EXACT = ["auto", "simplex", "primal", "ipm"]


def two_var_lp():
    """max x+y s.t. x+2y<=4, 3x+y<=6, x,y>=0: x=(1.6, 1.2), objective -2.8, duals (-0.4, -0.2)."""
    return Problem(c=[-1.0, -1.0], A=sp.csc_matrix([[1.0, 2.0], [3.0, 1.0]]), row_lo=[-INF, -INF],
                   row_hi=[4.0, 6.0], col_lo=[0.0, 0.0], col_hi=[INF, INF], name="two_var")


def ranged_lp():
    """min x1+2x2+3x3+10 s.t. x1+x2+x3=6, 1<=x1-x2<=2, 3<=x2+x3<=5, x>=0.
    Eliminating x1 leaves min 6+x2+2x3 over a polygon whose best vertex is x2=2, x3=1:
    x=(3, 2, 1), objective 20; c = A^T y gives duals (0, 1, 3)."""
    A = sp.csc_matrix([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [0.0, 1.0, 1.0]])
    return Problem(c=[1.0, 2.0, 3.0], A=A, row_lo=[6.0, 1.0, 3.0], row_hi=[6.0, 2.0, 5.0],
                   col_lo=[0.0] * 3, col_hi=[INF] * 3, obj_offset=10.0, name="ranged")


def bounded_lp():
    """min -x1-2x2+x3, x1 in [0,3], x2 in (-inf,2], x3 in [1,4], x1+x2<=4, free row x1-x3:
    x=(2, 2, 1), objective -5, duals (-1, 0)."""
    A = sp.csc_matrix([[1.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    return Problem(c=[-1.0, -2.0, 1.0], A=A, row_lo=[-INF, -INF], row_hi=[4.0, INF],
                   col_lo=[0.0, -INF, 1.0], col_hi=[3.0, 2.0, 4.0], name="bounded")


KNOWN = [(two_var_lp, -2.8, [1.6, 1.2], [-0.4, -0.2]),
         (ranged_lp, 20.0, [3.0, 2.0, 1.0], [0.0, 1.0, 3.0]),
         (bounded_lp, -5.0, [2.0, 2.0, 1.0], [-1.0, 0.0])]


def knapsack():
    """Values 10,13,7,8, weights 5,6,4,3, capacity 10: best is items 1 and 3 (value 21)."""
    return Problem(c=[-10.0, -13.0, -7.0, -8.0], A=sp.csc_matrix([[5.0, 6.0, 4.0, 3.0]]),
                   row_lo=[-INF], row_hi=[10.0], col_lo=[0.0] * 4, col_hi=[1.0] * 4,
                   integrality=[True] * 4, name="knapsack")


def random_lp(n, seed=0):
    """Feasible, bounded covering LP: min c@x, A@x >= A@x0/2, 0 <= x <= 10 (A n x n, ~9 nnz/col)."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, n, 9 * n), np.repeat(np.arange(n), 9)
    A = sp.csc_matrix((rng.uniform(0.1, 1.0, 9 * n), (rows, cols)), shape=(n, n))
    x0 = rng.uniform(0.0, 10.0, n)
    return Problem(c=rng.uniform(0.5, 1.5, n), A=A, row_lo=A @ x0 / 2, row_hi=np.full(n, INF),
                   col_lo=np.zeros(n), col_hi=np.full(n, 10.0), name=f"random{n}")


def wide_lp(n_vars):
    """min sum(x), 0 <= x <= 1, one row sum(x) >= 1: objective 1."""
    return Problem(c=np.ones(n_vars), A=sp.csc_matrix(np.ones((1, n_vars))), row_lo=[1.0],
                   row_hi=[INF], col_lo=np.zeros(n_vars), col_hi=np.ones(n_vars), name="wide")


def gurobi_limit():
    """The Gurobi licence limit (None = unrestricted); skips the test when Gurobi is unusable."""
    if available_backends()["gurobi"].startswith("unavailable"):
        pytest.skip(f"gurobi: {available_backends()['gurobi']}")
    from alexnet_repair.solvers import gurobi
    return gurobi.licence_limit()


# ---------------------------------------------------------------- HiGHS

@pytest.mark.parametrize("algorithm", EXACT + ["ipm-nocrossover", "pdlp"])
@pytest.mark.parametrize("make, objective, x, duals", KNOWN)
def test_highs_known_answers(make, objective, x, duals, algorithm):
    tol = {"ipm-nocrossover": 1e-6, "pdlp": 1e-4}.get(algorithm, 1e-9)
    result = solve(make(), "highs", SolveOptions(algorithm=algorithm))
    assert result.status is Status.OPTIMAL and result.has_solution
    assert result.objective == pytest.approx(objective, abs=tol)
    np.testing.assert_allclose(result.x, x, atol=max(tol, 1e-7))
    np.testing.assert_allclose(result.duals, duals, atol=max(tol, 1e-7))
    assert (result.backend, result.backend_version) == ("highs", available_backends()["highs"])
    assert result.algorithm == algorithm and result.runtime >= 0
    assert set(result.iterations) == {"simplex", "ipm", "pdlp", "crossover", "nodes"}
    problem = make()
    assert (result.n_vars, result.n_rows, result.nnz) == (problem.n_vars, problem.n_rows, problem.nnz)
    assert result.summary()["status"] == "optimal"


def test_highs_reports_the_method_it_ran():
    assert solve(two_var_lp(), "highs", SolveOptions(algorithm="ipm")).iterations["ipm"] > 0
    assert solve(two_var_lp(), "highs", SolveOptions(algorithm="pdlp")).iterations["pdlp"] > 0


def test_infeasible():
    problem = Problem(c=[1.0, 1.0], A=sp.csc_matrix([[1.0, 1.0]]), row_lo=[5.0], row_hi=[INF],
                      col_lo=[0.0, 0.0], col_hi=[2.0, 2.0])
    result = solve(problem, "highs")
    assert result.status is Status.INFEASIBLE
    assert result.x is None and result.objective is None and result.duals is None


def test_unbounded():
    problem = Problem(c=[-1.0, 0.0], A=sp.csc_matrix([[1.0, -1.0]]), row_lo=[-INF], row_hi=[1.0],
                      col_lo=[0.0, 0.0], col_hi=[INF, INF])
    result = solve(problem, "highs", SolveOptions(algorithm="simplex"))
    assert result.x is None
    assert (result.status is Status.UNBOUNDED
            or (result.status is Status.INFEASIBLE and "unbounded" in result.message))


def test_knapsack_milp():
    result = solve(knapsack(), "highs")
    assert result.status is Status.OPTIMAL
    assert result.objective == pytest.approx(-21.0)
    np.testing.assert_array_equal(np.round(result.x), [0, 1, 0, 1])
    np.testing.assert_allclose(result.x, np.round(result.x), atol=1e-9)
    assert result.mip_gap == pytest.approx(0.0, abs=1e-9)
    assert result.mip_bound == pytest.approx(-21.0)
    assert result.duals is None


@pytest.mark.parametrize("algorithm", ["auto", "simplex", "ipm"])
def test_time_limit_is_a_status_not_an_exception(algorithm):
    problem = random_lp(3000)
    result = solve(problem, "highs", SolveOptions(algorithm=algorithm, time_limit=1e-3))
    assert result.status is Status.TIME_LIMIT
    if result.x is not None:  # only a primal feasible point may come back
        activity = problem.A @ result.x
        assert (activity >= problem.row_lo - 1e-6).all()
    assert result.runtime < 5.0


@pytest.mark.parametrize("extra", [{"no_such_option": 1}, {"presolve": "sometimes"},
                                   {"highs:time_limit": "soon"}])
def test_bad_extra_option_is_a_solver_error(extra):
    name = next(iter(extra)).split(":")[-1]
    with pytest.raises(SolverError, match=name):
        solve(two_var_lp(), "highs", SolveOptions(extra=extra))


def test_extra_options_are_routed_by_prefix():
    options = SolveOptions(extra={"gurobi:NoSuchParam": 1, "highs:presolve": "off"})
    assert solve(two_var_lp(), "highs", options).objective == pytest.approx(-2.8)
    with pytest.raises(SolverError, match="prefix"):
        solve(two_var_lp(), "highs", SolveOptions(extra={"cplex:x": 1}))


def test_bad_names_are_solver_errors():
    with pytest.raises(SolverError, match="algorithm"):
        solve(two_var_lp(), "highs", SolveOptions(algorithm="barrier"))
    with pytest.raises(SolverError, match="unknown solver"):
        solve(two_var_lp(), "cplex")


def test_validate_rejects_bad_problems():
    good = two_var_lp()
    with pytest.raises(ValueError, match="lo"):
        Problem(good.c, good.A, good.row_lo, good.row_hi, [0.0, 3.0], [1.0, 1.0]).validate()
    with pytest.raises(ValueError, match="shape"):
        Problem(good.c, good.A, good.row_lo[:1], good.row_hi, good.col_lo, good.col_hi).validate()
    with pytest.raises(ValueError, match="finite"):
        Problem([np.nan, 1.0], good.A, good.row_lo, good.row_hi, good.col_lo, good.col_hi).validate()


def test_session_resolve_after_bound_change():
    with open_session(two_var_lp(), "highs", SolveOptions(algorithm="simplex")) as session:
        assert session.backend == "highs"
        assert session.solve().objective == pytest.approx(-2.8)
        session.set_col_bounds(np.array([0]), np.array([0.0]), np.array([1.0]))
        result = session.solve()  # x <= 1: then y = 1.5
        assert result.objective == pytest.approx(-2.5)
        np.testing.assert_allclose(result.x, [1.0, 1.5], atol=1e-9)


def test_session_warm_start_reuses_the_basis():
    """Asserted on what HiGHS reports (iteration counts), never on times."""
    problem = random_lp(300)
    with open_session(problem, "highs", SolveOptions(algorithm="simplex")) as session:
        cold = session.solve()
        again = session.solve()  # nothing changed: the optimal basis is still there
        j = int(np.argmax(cold.x))  # cut the largest entry in half
        session.set_col_bounds([j], [0.0], [cold.x[j] / 2])
        warm = session.solve()
    problem.col_hi[j] = cold.x[j] / 2
    fresh = solve(problem, "highs", SolveOptions(algorithm="simplex"))
    assert cold.status is again.status is warm.status is fresh.status is Status.OPTIMAL
    assert again.iterations["simplex"] == 0 and again.objective == pytest.approx(cold.objective, rel=1e-12)
    assert warm.objective == pytest.approx(fresh.objective, rel=1e-9) and warm.objective > cold.objective
    assert 0 < warm.iterations["simplex"] < fresh.iterations["simplex"]


def test_session_time_limit_is_per_solve():
    """HiGHS compares time_limit with its total run time over every run of the object; the session hands it the
    run time so far plus the per-solve limit. Checked on HiGHS's own clock and option, not on wall-clock ratios."""
    with open_session(random_lp(600), "highs", SolveOptions(algorithm="simplex")) as session:
        cold = session.solve()
        highs = session._h
        session.set_option("time_limit", 60.0)
        ran_before = highs.getRunTime()
        assert ran_before > 0
        j = int(np.argmax(cold.x))
        session.set_col_bounds([j], [0.0], [cold.x[j] / 2])
        warm = session.solve()
        _, given = highs.getOptionValue("time_limit")
        assert ran_before <= given - 60.0 <= highs.getRunTime()  # per solve: offset by what already ran
        assert warm.status is Status.OPTIMAL and warm.iterations["simplex"] > 0
        session.set_option("time_limit", None)
        session.set_col_bounds([j], [0.0], [cold.x[j] / 4])
        assert session.solve().status is Status.OPTIMAL
        assert highs.getOptionValue("time_limit")[1] == INF


def test_unmarked_tests_solve_with_highs():
    """conftest keeps Gurobi out of every test not marked ``gurobi``, here and in subprocesses."""
    assert choose_backend(wide_lp(10), "auto") == "highs"
    assert solve(wide_lp(10)).backend == "highs"
    done = subprocess.run([sys.executable, "-c", "from tests.solvers.test_solvers import wide_lp\n"
                           "from alexnet_repair.solvers import solve\nprint(solve(wide_lp(10)).backend)"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "highs\n"


def test_highs_thread_count_can_change_between_solves():
    """HiGHS sizes one process-wide worker pool; a different explicit size must still work."""
    for threads in (None, 1, 2, None, 1):
        result = solve(two_var_lp(), "highs", SolveOptions(threads=threads))
        assert result.objective == pytest.approx(-2.8)


def test_import_without_backends_and_quiet_highs():
    """`import alexnet_repair.solvers` needs neither package; auto falls back to HiGHS silently."""
    script = textwrap.dedent("""
        import sys
        sys.modules["gurobipy"] = None
        import numpy as np, scipy.sparse as sp
        from alexnet_repair.errors import SolverError
        from alexnet_repair.solvers import Problem, available_backends, choose_backend, solve
        p = Problem([1.0], sp.csc_matrix([[1.0]]), [1.0], [2.0], [0.0], [5.0])
        assert available_backends()["gurobi"].startswith("unavailable")
        try:
            solve(p, "gurobi")
        except SolverError as err:
            assert "gurobipy is not installed; use --solver highs" in str(err), err
        else:
            raise AssertionError("no SolverError")
        result = solve(p)
        print(result.backend, result.objective)
        sys.modules["highspy"] = None
        import importlib, alexnet_repair.solvers.highs as highs
        try:
            highs.version()
        except SolverError as err:
            print(err)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "highs 1.0\nhighspy is not installed; install it with `uv sync`\n"


# ---------------------------------------------------------------- Gurobi

@pytest.mark.gurobi
@pytest.mark.parametrize("algorithm", EXACT)
@pytest.mark.parametrize("make, objective, x, duals", KNOWN)
def test_gurobi_matches_highs(make, objective, x, duals, algorithm):
    gurobi_limit()
    result = solve(make(), "gurobi", SolveOptions(algorithm=algorithm))
    reference = solve(make(), "highs", SolveOptions(algorithm=algorithm))
    assert result.status is Status.OPTIMAL and result.backend == "gurobi"
    assert result.backend_version.count(".") == 2
    assert result.objective == pytest.approx(reference.objective, abs=1e-9)
    assert result.objective == pytest.approx(objective, abs=1e-9)
    np.testing.assert_allclose(result.x, x, atol=1e-7)
    np.testing.assert_allclose(result.duals, duals, atol=1e-7)


@pytest.mark.gurobi
def test_gurobi_other_outcomes():
    gurobi_limit()
    result = solve(knapsack(), "gurobi")
    assert result.status is Status.OPTIMAL and result.objective == pytest.approx(-21.0)
    np.testing.assert_allclose(result.x, [0, 1, 0, 1], atol=1e-9)
    infeasible = Problem([1.0], sp.csc_matrix([[1.0]]), [5.0], [INF], [0.0], [2.0])
    assert solve(infeasible, "gurobi").status is Status.INFEASIBLE
    with pytest.raises(SolverError, match="NoSuchParam"):
        solve(two_var_lp(), "gurobi", SolveOptions(extra={"NoSuchParam": 1}))
    with open_session(two_var_lp(), "gurobi", SolveOptions(algorithm="simplex")) as session:
        assert session.backend == "gurobi" and session.solve().objective == pytest.approx(-2.8)
        session.set_col_bounds([0], [0.0], [1.0])
        assert session.solve().objective == pytest.approx(-2.5)


@pytest.mark.gurobi
def test_gurobi_size_limited_licence():
    if gurobi_limit() is None:
        pytest.skip("Gurobi licence is unrestricted")
    with pytest.raises(SolverError, match="size-limited") as caught:
        solve(wide_lp(2500), "gurobi")
    assert "--solver highs" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.gurobi
def test_auto_picks_gurobi_when_the_licence_fits():
    limit = gurobi_limit()
    assert choose_backend(wide_lp(10), "auto") == "gurobi"
    assert solve(wide_lp(10)).backend == "gurobi"
    if limit is not None:
        big = wide_lp(2500)
        assert choose_backend(big, "auto") == "highs"
        result = solve(big)
        assert result.backend == "highs" and result.objective == pytest.approx(1.0)


@pytest.mark.gurobi
def test_gurobi_prints_nothing():
    gurobi_limit()
    script = ("from tests.solvers.test_solvers import knapsack, two_var_lp\n"
              "from alexnet_repair.solvers import solve\n"
              "print(solve(two_var_lp(), 'gurobi').backend, solve(knapsack()).backend)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "gurobi gurobi\n"
