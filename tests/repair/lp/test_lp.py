"""The repair LP (alexnet_repair.repair.lp and its formulations) on tiny, hand-checkable and
random synthetic instances. Every solution is re-checked in float32 by repair.check."""

from __future__ import annotations

import numpy as np
import pytest

from alexnet_repair.errors import SolverError, UsageError
from alexnet_repair.repair.lp import network as blocks
from alexnet_repair.repair.lp.rows import margin_rows
from alexnet_repair.repair.lp import COLGEN_POINTS, OBJECTIVES, LPSpec, solve_repair_lp
from alexnet_repair.repair.lp.network import objective_value
from alexnet_repair.repair.lp.straightforward import encode_straightforward
from instances import make_instance
from alexnet_repair.repair.verify import apply_changes, check_solution
from alexnet_repair.solvers import SolveOptions, Status, solve

FORMULATIONS = ("straightforward", "colgen", "ipm")


def tiny_spec(objective: str, y0=(0.0, 0.0), **kw) -> LPSpec:
    """1 point, 1 input (a = 1), 2 classes, target 0; original logits y0."""
    return LPSpec(inputs=np.array([[1.0]]), targets=np.array([0]), weights=[np.zeros((2, 1))],
                  biases=[np.array(y0, dtype=float)], objective=objective, **kw)


def assert_valid(spec: LPSpec, sol) -> None:
    assert sol.status == Status.OPTIMAL, sol.message
    rep = check_solution(spec, sol.dW, sol.db)
    assert rep.ok, str(rep)
    n_r = spec.weights[0].shape[0] if spec.rows is None else len(spec.rows)
    assert sol.dW.shape == (n_r, spec.inputs.shape[1])
    assert [b.shape for b in sol.db] == [(n_r,)] + [b.shape for b in spec.biases[1:]]
    ws, bs = apply_changes(spec, sol.dW, sol.db)
    if spec.rows is not None:  # rows outside R bit-identical
        keep = np.setdiff1d(np.arange(spec.weights[0].shape[0]), spec.rows)
        assert np.array_equal(ws[0][keep], spec.weights[0][keep].astype(np.float32))
        assert np.array_equal(bs[0][keep], spec.biases[0][keep].astype(np.float32))
    for w, w0 in zip(ws[1:], spec.weights[1:]):  # later weights never change
        assert np.array_equal(w, w0.astype(np.float32))


# minimal objective for a 1-point 2-class problem that needs v0 - v1 >= m (see tiny_spec):
# d = (v0, v1, dW0, dW1, db0, db1); optimum v0 = -v1 = m/2, every parameter change +-m/4.
KNOWN = {"linf+l1n": lambda m: m / 2 + 2 * m / 6, "l1": lambda m: 2 * m, "linf": lambda m: m / 2,
         "params-only": lambda m: m / 4 + m / 4}


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("formulation", FORMULATIONS)
@pytest.mark.parametrize("y0", [(0.0, 0.0), (0.0, 1.0)])
def test_known_answer_one_point(objective, formulation, y0):
    spec = tiny_spec(objective, y0)
    need = spec.margin + spec.margin_slack + y0[1] - y0[0]
    sol = solve_repair_lp(spec, formulation=formulation)
    assert_valid(spec, sol)
    assert sol.objective == pytest.approx(KNOWN[objective](need), rel=1e-6)
    net = blocks.original_network(spec)
    assert objective_value(net, sol.dW, sol.db) == pytest.approx(sol.objective, rel=1e-6)


CASES = {  # name: (dims, N, editable rows)
    "last": ((48, 10), 12, None),
    "last-rows": ((48, 10), 6, 6),
    "hidden": ((40, 24, 10), 8, 12),
    "two-hidden": ((24, 16, 12, 10), 5, None),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_formulations_agree(case, objective):
    dims, n, rows = CASES[case]
    spec = make_instance(n, dims, n_rows=rows, seed=3, objective=objective, param_bound=10.0)
    ref = solve_repair_lp(spec, formulation="straightforward")
    assert_valid(spec, ref)
    ipm_covers = objective in ("linf+l1n", "l1") and len(dims) <= 3   # the certified IPM's objectives and layers
    for formulation in ("colgen", "ipm", "auto"):
        sol = solve_repair_lp(spec, formulation=formulation)
        assert_valid(spec, sol)
        assert sol.objective == pytest.approx(ref.objective, rel=1e-6), (formulation, sol.formulation)
        hidden_few = len(dims) > 2 and n <= COLGEN_POINTS  # auto sends a hidden layer with few points to colgen
        colgen = formulation == "colgen" or not ipm_covers or (formulation == "auto" and hidden_few)
        expected = "colgen" if colgen else "ipm"
        assert sol.formulation == expected, (formulation, sol.formulation, sol.message)   # what actually ran


def test_hidden_layer_keeps_patterns():
    spec = make_instance(10, (40, 24, 10), n_rows=16, seed=5)
    sol = solve_repair_lp(spec)
    assert_valid(spec, sol)
    ws, bs = apply_changes(spec, sol.dW, sol.db)
    old = np.maximum(spec.inputs @ spec.weights[0].T + spec.biases[0], 0) > 0
    z = spec.inputs.astype(np.float32) @ ws[0].T + bs[0]
    sure = np.abs(spec.inputs @ spec.weights[0].T + spec.biases[0]) >= spec.pattern_eps
    assert ((z > 0) == old)[sure].all()


def test_straightforward_is_the_lp_of_the_spec():
    """Column bounds and rows of the reference encoding hold at the decoded optimum."""
    spec = make_instance(6, (20, 10), seed=1)
    problem, decode = encode_straightforward(spec)
    res = solve(problem, solver="highs")
    assert res.status == Status.OPTIMAL
    dW, db = decode(res.x)
    assert np.abs(dW).max() <= spec.bound + 1e-9
    assert objective_value(blocks.original_network(spec), dW, db) == pytest.approx(res.objective, rel=1e-7)


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_infeasible(formulation):
    spec = make_instance(6, (20, 10), seed=2, param_bound=1e-3, margin=50.0)
    sol = solve_repair_lp(spec, formulation=formulation)
    assert sol.status == Status.INFEASIBLE
    assert sol.dW is None and sol.objective is None


def test_colgen_wide_layer_near_the_bound():
    """A 4096-input last layer with a tight bound: the old big-M master was too badly scaled for
    HiGHS ("model status: Not Set"); the two-phase colgen solves it to the IPM's optimum."""
    spec = make_instance(10, (4096, 10), seed=0, param_bound=0.01)
    sol = solve_repair_lp(spec, solver="highs", formulation="colgen")
    assert_valid(spec, sol)
    assert np.abs(sol.dW).max() <= spec.param_bound
    ref = solve_repair_lp(spec, formulation="ipm")
    assert ref.formulation == "ipm"
    assert sol.objective == pytest.approx(ref.objective, rel=1e-6)


def test_colgen_wide_layer_infeasible():
    """Phase 1 proves infeasibility (the case that raised SolverError before) and nothing is returned."""
    spec = make_instance(4, (4096, 10), seed=0, param_bound=0.001)
    sol = solve_repair_lp(spec, solver="highs", formulation="colgen")
    assert sol.status == Status.INFEASIBLE
    assert sol.dW is None and sol.objective is None
    assert "margin violation" in sol.message


@pytest.mark.parametrize("formulation", FORMULATIONS)
def test_time_limit(formulation):
    spec = make_instance(60, (512, 10), seed=4)
    sol = solve_repair_lp(spec, formulation=formulation, options=SolveOptions(time_limit=1e-3))
    assert sol.status == Status.TIME_LIMIT
    assert sol.dW is None


def test_spec_validation():
    with pytest.raises(UsageError):
        tiny_spec("l2")
    with pytest.raises(UsageError):
        LPSpec(inputs=np.ones((1, 2)), targets=np.array([5]), weights=[np.zeros((2, 2))], biases=[np.zeros(2)])
    with pytest.raises(UsageError):
        tiny_spec("l1", rows=[7])
    with pytest.raises(UsageError):
        solve_repair_lp(tiny_spec("l1"), formulation="magic")


def test_margin_rows_block():
    """The reusable margin block: one row per (point, other class), 2 entries, right RHS."""
    y0 = np.array([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]])
    v = np.arange(6).reshape(2, 3)
    a, lo, pts = margin_rows(v, None, np.array([0, 0]), y0, 2.0, 6)
    assert a.shape == (4, 6) and (a.getnnz(axis=1) == 2).all()
    assert np.allclose(lo, [3.0, 5.0, 0.0, 0.0]) and list(pts) == [0, 0, 1, 1]


@pytest.mark.gurobi
def test_gurobi_agrees():
    pytest.importorskip("gurobipy")
    spec = make_instance(3, (12, 10), seed=6)
    problem, _ = encode_straightforward(spec)
    ref = solve(problem, solver="highs")
    try:
        res = solve(problem, solver="gurobi")
    except SolverError as err:
        pytest.skip(f"gurobi unusable here: {err}")
    assert res.status == Status.OPTIMAL
    assert res.objective == pytest.approx(ref.objective, rel=1e-6)
    try:
        sol = solve_repair_lp(spec, solver="gurobi", formulation="colgen")
    except SolverError as err:
        pytest.skip(f"gurobi unusable here: {err}")
    assert_valid(spec, sol)
    assert sol.objective == pytest.approx(ref.objective, rel=1e-6)
