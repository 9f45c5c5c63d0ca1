"""The certified structured IPM (repair/lp/ipm): it solves the exact LP (weight l-inf coupling included), its
certificates reject what they must, its Farkas certificate proves infeasibility, and its structured normal
equations equal the dense matrix in every mode."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alexnet_repair.repair.lp import solve_repair_lp
from alexnet_repair.repair.lp.ipm.certificate import Bounds, certify, farkas, margin_farkas
from alexnet_repair.repair.lp.ipm.certified import initial_margin_rows
from alexnet_repair.repair.lp.ipm.formulation import KIND_SHIFT, ROW_D, build_ipm_lp
from alexnet_repair.repair.lp.ipm.mehrotra import solve_ipm
from alexnet_repair.repair.lp.ipm.normal_equations import BlockOperator
from alexnet_repair.repair.lp.ipm.warm import LastRound, lookup, warm_start
from alexnet_repair.repair.lp.network import original_network, output_changes
from instances import make_instance
from alexnet_repair.solvers import Status


def weight_linf_instance(n=12, dims=(64, 10), shrink=0.05, **kw):
    """Small features and correspondingly large weights: the weight changes, not the logit changes, set the
    l-inf term (the case the IPM's old relaxation could never certify)."""
    spec = make_instance(n, dims, seed=4, param_bound=50.0, **kw)
    spec.inputs = spec.inputs * shrink
    spec.weights[0] = spec.weights[0] / shrink
    return spec


@pytest.mark.parametrize("dims, rows", [((64, 10), None), ((48, 24, 10), 12)])
def test_ipm_certifies_when_the_weight_linf_binds(dims, rows):
    spec = weight_linf_instance(dims=dims, n_rows=rows)
    ref = solve_repair_lp(spec, formulation="straightforward")
    sol = solve_repair_lp(spec, formulation="ipm")
    assert sol.formulation == "ipm", sol.message          # certified by the IPM, no column-generation detour
    assert sol.objective == pytest.approx(ref.objective, rel=1e-6)
    out = np.abs(output_changes(original_network(spec), sol.dW, sol.db)).max()
    w_inf = max(np.abs(sol.dW).max(), max(np.abs(b).max() for b in sol.db))
    assert w_inf >= max(out, w_inf) * (1 - 1e-6)           # the parameter changes set the l-inf term here


def test_certificate_rejects_a_perturbed_point():
    spec = make_instance(10, (64, 10), seed=1, param_bound=10.0)
    net = original_network(spec)
    lp = build_ipm_lp(spec, net, initial_margin_rows(spec, net))
    res = solve_ipm(lp.op, lp.c, lp.b, lp.ub)
    good = certify(spec, net, lp, res.x, res.y)
    assert good.ok
    x = res.x.copy()
    x[: lp.op.n_w // 2] *= 0.9                              # shrink every positive weight change by 10%
    bad = certify(spec, net, lp, x, res.y)
    assert not bad.ok and (not bad.feasible or bad.gap > 1e-7)
    y = res.y * 1.01                                          # duals off: the lower bound drops
    assert certify(spec, net, lp, res.x, y).lower < good.lower


def test_bounds_pair_the_best_point_with_the_best_duals_of_other_iterates():
    """A late IPM iterate can improve the duals while an inaccurate Newton step spoils its primal point; the
    certificate pairs the best feasible point with the best lower bound seen, each valid on its own."""
    spec = make_instance(10, (64, 10), seed=1, param_bound=10.0)
    net = original_network(spec)
    lp = build_ipm_lp(spec, net, initial_margin_rows(spec, net))
    res = solve_ipm(lp.op, lp.c, lp.b, lp.ub)
    optimum = solve_repair_lp(spec, formulation="straightforward").objective
    weak_duals = certify(spec, net, lp, res.x, 0.5 * res.y)   # the optimal point, a poor lower bound
    x = res.x.copy()
    x[: lp.op.n_w] = 0.0                                      # no weight change: the edit points stay wrong
    bad_point = certify(spec, net, lp, x, res.y)               # the optimal duals, an infeasible point
    assert not weak_duals.ok and not bad_point.feasible
    bounds = Bounds()
    assert bounds.add(lp, bad_point, res.y) is bad_point and bounds.best() is None   # no feasible point yet
    best = bounds.add(lp, weak_duals, 0.5 * res.y)
    assert not best.ok
    best = bounds.add(lp, bad_point, res.y)
    assert best.ok and best.upper == weak_duals.upper and best.lower <= optimum * (1 + 1e-9)


@pytest.mark.parametrize("kw", [dict(n_points=4, dims=(256, 10), param_bound=1e-3),
                                dict(n_points=6, dims=(40, 24, 10), n_rows=12, param_bound=1e-3, margin=20.0)])
def test_farkas_certificate_proves_infeasibility(kw):
    spec = make_instance(seed=0, **kw)
    sol = solve_repair_lp(spec, formulation="ipm")
    assert sol.status == Status.INFEASIBLE and sol.formulation == "ipm" and "Farkas" in sol.message
    assert solve_repair_lp(spec, formulation="colgen").status == Status.INFEASIBLE   # the exact path agrees


def test_farkas_rejects_multipliers_of_a_feasible_lp():
    spec = make_instance(6, (64, 10), seed=2, param_bound=10.0)
    net = original_network(spec)
    lp = build_ipm_lp(spec, net)
    rng = np.random.default_rng(0)
    for _ in range(20):                                      # no y can prove a feasible LP infeasible
        y = rng.standard_normal(lp.b.size) * 10 ** rng.uniform(-3, 3)
        assert not farkas(lp, y) and not margin_farkas(spec, net, lp, y)


def test_margin_farkas_proves_infeasibility_from_the_margin_rows_alone():
    """B |G^T lam|_1 < lam . g: no change within the bound meets the margin rows (last layer), whatever the
    boxes of the logit changes and slacks; a bound that admits a repair refutes the same multipliers."""
    spec = make_instance(seed=0, n_points=4, dims=(256, 10), param_bound=1e-3)
    net = original_network(spec)
    lp = build_ipm_lp(spec, net, initial_margin_rows(spec, net))
    y = solve_ipm(lp.op, lp.c, lp.b, lp.ub, max_iter=10).y
    assert margin_farkas(spec, net, lp, y)
    spec.param_bound = 10.0
    assert not margin_farkas(spec, net, lp, y)               # the same rows, a box large enough to meet them


def dense_operator(weight_epigraph: bool, mode: str, seed: int = 0, ragged: bool = False, per_point: bool = False):
    """A small BlockOperator of the repair LP's shape (D rows, O rows, E rows, optional Ew rows); ragged: some
    points only in some blocks (as preserve points are), blocks of different sizes; per_point: each O row touches
    the output changes of one point in two blocks, as a margin row does (else random output changes)."""
    rng = np.random.default_rng(seed)
    n_pts, d, n_r = 5, 4, 3
    a = rng.standard_normal((n_pts, d))
    member = np.ones((n_pts, n_r), bool)
    if ragged:
        member[2:] = rng.random((n_pts - 2, n_r)) < 0.5
        member[4, 1] = False
    d_pairs = np.nonzero(member)
    n_d = d_pairs[0].size
    k = 0
    vp, vm, ev = (np.arange(k + i * n_d, k + (i + 1) * n_d) for i in range(3))
    k = 3 * n_d
    ew = np.arange(k, k + n_r * d)
    t_col = k + n_r * d
    n_cols = t_col + 1
    ar = np.arange(n_d)
    rows_d = sp.csr_matrix((np.r_[np.ones(n_d), -np.ones(n_d)], (np.r_[ar, ar], np.r_[vp, vm])), shape=(n_d, n_cols))
    mask = np.isin(np.arange(n_cols), np.r_[vp, vm])[None] & (rng.random((4, n_cols)) < 0.6)
    if per_point:  # O row j: the point j's v+ and v- in two of its blocks
        mask[:] = False
        for j in range(4):
            pairs = rng.permutation(np.flatnonzero(d_pairs[0] == j))[:2]
            mask[j, np.r_[vp[pairs], vm[pairs]]] = True
    rows_o = sp.csr_matrix(rng.standard_normal((4, n_cols)) * mask)
    rows_e = sp.csr_matrix((np.r_[np.ones(3 * n_d), -np.ones(n_d)], (np.r_[ar, ar, ar, ar],
                           np.r_[vp, vm, ev, np.full(n_d, t_col)])), shape=(n_d, n_cols))
    parts, e_mask = [rows_d, rows_o, rows_e], [np.zeros(n_d + 4, bool), np.ones(n_d, bool)]
    if weight_epigraph:
        aw = np.arange(n_r * d)
        parts.append(sp.csr_matrix((np.r_[np.ones(aw.size), -np.ones(aw.size)], (np.r_[aw, aw],
                                   np.r_[ew, np.full(aw.size, t_col)])), shape=(aw.size, n_cols)))
        e_mask.append(np.zeros(aw.size, bool))
    ax = sp.vstack(parts).tocsc()
    return BlockOperator(a, n_r, ax, t_col, np.concatenate(e_mask), mode=mode, reg=0.0,
                         weight_epigraph=weight_epigraph, d_pairs=d_pairs if ragged else None), rng


@pytest.mark.parametrize("per_point", [False, True])
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("mode", ["schur-o", "schur-d"])
@pytest.mark.parametrize("weight_epigraph", [False, True])
def test_block_operator_matches_the_dense_matrix(mode, weight_epigraph, ragged, per_point):
    """Each mode, and in schur-o both Schur updates: the gather (an O row meets one D row per block) and the
    products (random O rows)."""
    op, rng = dense_operator(weight_epigraph, mode, ragged=ragged, per_point=per_point)
    assert op.full != ragged
    dense = np.column_stack([op.matvec(e) for e in np.eye(op.n)])          # A, column by column
    y = rng.standard_normal(dense.shape[0])
    assert np.allclose(op.rmatvec(y), dense.T @ y)
    theta = rng.random(op.n) + 0.1
    op.factor(theta)
    gd = op.g_do.tocoo()
    assert (np.unique(gd.col * op.n_r + op.d_r[gd.row]).size == gd.nnz) == per_point  # the Schur update's path
    normal = dense @ np.diag(theta) @ dense.T
    r = rng.standard_normal(dense.shape[0])
    assert np.allclose(normal @ op.solve(r), r, atol=1e-9)


def test_idle_cores_sees_a_busy_core():
    import os
    import subprocess
    import sys
    import time

    from alexnet_repair.repair.lp.ipm.blas_threads import idle_cores

    cores = len(os.sched_getaffinity(0))
    assert 1 <= idle_cores() <= cores
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert idle_cores(0.3) <= max(1, cores - 1)          # one core is taken: the IPM leaves it alone
    finally:
        spinner.kill()
        spinner.wait()


def test_idle_cores_leaves_out_this_process_own_threads():
    """OpenBLAS's threads spin for a while after a product; a thread of this process spinning is not other work."""
    import os
    import threading
    import time

    from alexnet_repair.repair.lp.ipm.blas_threads import idle_cores

    baseline = idle_cores(0.3)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.2)
        assert idle_cores(0.3) >= min(baseline, len(os.sched_getaffinity(0)))
    finally:
        stop.set()
        spinner.join()


def test_small_factorisations_run_on_one_thread():
    import os

    from alexnet_repair.repair.lp.ipm.blas_threads import PARALLEL_FLOPS, threads_for

    spec = make_instance(10, (64, 10), seed=1, param_bound=10.0)
    net = original_network(spec)
    lp = build_ipm_lp(spec, net, initial_margin_rows(spec, net))
    assert 0 < lp.op.factor_flops < PARALLEL_FLOPS and threads_for(lp.op.factor_flops) == 1
    assert 1 <= threads_for(10 * PARALLEL_FLOPS) <= len(os.sched_getaffinity(0))


def test_warm_start_carries_a_round_onto_the_next():
    """The next round's LP (more preserve rows) starts from the last round's snapshot: shared columns keep their
    place, new logit changes meet their D rows, and the warm-started IPM reaches the cold start's
    optimum (of that round's LP)."""
    spec = make_instance(8, (48, 10), seed=3, param_bound=10.0, n_preserve=60, preserve_margin=0.5)
    spec = spec.with_preserve_points(np.arange(spec.n_preserve))
    net = original_network(spec)
    keep0 = initial_margin_rows(spec, net)
    lp0 = build_ipm_lp(spec, net, keep0)
    snap = solve_ipm(lp0.op, lp0.c, lp0.b, lp0.ub, snapshot_below=(1.0,)).snapshots[0]
    n_cls = spec.weights[-1].shape[0]
    extra = np.arange(spec.n_edit_points * (n_cls - 1), spec.inputs.shape[0] * (n_cls - 1), 7)
    keep1 = np.union1d(keep0, extra)
    lp1 = build_ipm_lp(spec, net, keep1)
    x, w, y, z, s = warm_start(LastRound(lp0.col_keys, lp0.row_keys, lp0.ub, [snap], keep0), snap, lp1)
    bnd = np.isfinite(lp1.ub)
    assert (x > 0).all() and (z > 0).all() and (w[bnd] > 0).all() and (s[bnd] > 0).all()
    n_w = lp1.op.n_w
    dw_old = snap[0][: n_w // 2] - snap[0][n_w // 2: n_w]
    assert np.allclose(x[: n_w // 2] - x[n_w // 2: n_w], dw_old)    # the weight changes carry over
    new_d = np.flatnonzero((lookup(lp1.row_keys, lp0.row_keys) < 0) & (lp1.row_keys >> KIND_SHIFT == ROW_D))
    assert new_d.size > 0
    assert np.abs((lp1.b - lp1.op.matvec(x))[new_d]).max() < 1e-9   # new logit changes meet their D rows
    cold = solve_ipm(lp1.op, lp1.c, lp1.b, lp1.ub)
    warm = solve_ipm(lp1.op, lp1.c, lp1.b, lp1.ub, start=(x, w, y, z, s))
    assert cold.converged and warm.converged
    assert warm.primal_obj == pytest.approx(cold.primal_obj, rel=1e-7)
