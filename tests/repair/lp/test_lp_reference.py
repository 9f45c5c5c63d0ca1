"""An independent dense reference for the repair LP, written here from the maths of docs/DESIGN.md ("The repair
LP") with plain numpy loops and solved with scipy's linprog: no code of alexnet_repair.repair.lp is used to build
it, so an encoding error shared by every formulation (they share lp.rows / lp.network) cannot pass unnoticed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from alexnet_repair.repair.lp import OBJECTIVES, LPSpec, solve_repair_lp


def random_spec(n_pts: int, hidden: int | None, objective: str, seed: int) -> LPSpec:
    """Random small weights (last layer, or one hidden layer of ``hidden`` units), points with random targets."""
    rng = np.random.default_rng(seed)
    n_in, n_cls = 5, 4
    dims = [n_in] + ([hidden] if hidden else []) + [n_cls]
    weights = [rng.standard_normal((o, i)) for i, o in zip(dims[:-1], dims[1:])]
    biases = [0.1 * rng.standard_normal(o) for o in dims[1:]]
    inputs = np.abs(rng.standard_normal((n_pts, n_in)))
    return LPSpec(inputs=inputs, targets=rng.integers(0, n_cls, n_pts), weights=weights, biases=biases,
                  param_bound=3.0, margin=0.5, objective=objective)


def reference_optimum(spec: LPSpec) -> float:
    """min over (dW, db_0, [db_1]) of the objective, subject to margins, patterns and bounds, by linprog."""
    a, W, b = spec.inputs, spec.weights, spec.biases
    n_pts, n_in = a.shape
    n_out0, n_cls = W[0].shape[0], W[-1].shape[0]
    hidden = len(W) == 2
    n_p = n_out0 * n_in + n_out0 + (n_cls if hidden else 0)          # parameters: dW (row-major), db_0, db_1

    def col_dw(r, j):
        return r * n_in + j

    def col_db0(r):
        return n_out0 * n_in + r

    z0 = a @ W[0].T + b[0]                                            # (N, out_0) original pre-activations
    y0 = (np.maximum(z0, 0) @ W[1].T + b[1]) if hidden else z0        # original logits
    # logit changes v[i, c] = V[i, c] @ p (linear in the parameters once the pattern is fixed)
    V = np.zeros((n_pts, n_cls, n_p))
    Z = np.zeros((n_pts, n_out0, n_p))                                # changes of the first layer's pre-activations
    for i in range(n_pts):
        for r in range(n_out0):
            for j in range(n_in):
                Z[i, r, col_dw(r, j)] = a[i, j]
            Z[i, r, col_db0(r)] = 1.0
        if hidden:
            active = (z0[i] > 0).astype(float)
            for c in range(n_cls):
                V[i, c] = (W[1][c] * active) @ Z[i]
                V[i, c, n_out0 * n_in + n_out0 + c] += 1.0
        else:
            V[i] = Z[i]
    params = np.eye(n_p)
    if spec.objective == "params-only":
        d_rows, w_inf, w_l1 = params, 1.0, 1.0 / n_p
    else:
        d_rows = np.vstack([V.reshape(-1, n_p), params])
        n_all = d_rows.shape[0]
        w_inf, w_l1 = {"linf+l1n": (1.0, 1.0 / n_all), "l1": (0.0, 1.0), "linf": (1.0, 0.0)}[spec.objective]
    n_d = d_rows.shape[0]
    # variables x = [p (n_p), e (n_d), t]; |d_k| <= e_k, e_k <= t
    n_x = n_p + n_d + 1
    A, ub = [], []
    for k in range(n_d):
        for sign in (1.0, -1.0):                                     # sign * d_k - e_k <= 0
            row = np.zeros(n_x)
            row[:n_p] = sign * d_rows[k]
            row[n_p + k] = -1.0
            A.append(row), ub.append(0.0)
        row = np.zeros(n_x)                                          # e_k - t <= 0
        row[n_p + k], row[-1] = 1.0, -1.0
        A.append(row), ub.append(0.0)
    need = spec.margin + spec.margin_slack
    for i in range(n_pts):                                          # y[t] - y[c] >= margin, i.e. -(v_t - v_c) <= ...
        t_i = spec.targets[i]
        for c in range(n_cls):
            if c != t_i:
                row = np.zeros(n_x)
                row[:n_p] = -(V[i, t_i] - V[i, c])
                A.append(row), ub.append(y0[i, t_i] - y0[i, c] - need)
    if hidden:                                                       # the pattern of the hidden layer is kept
        for i in range(n_pts):
            for r in range(n_out0):
                row = np.zeros(n_x)
                if z0[i, r] > 0:                                     # z0 + dz >= min(eps, z0)
                    row[:n_p] = -Z[i, r]
                    A.append(row), ub.append(z0[i, r] - min(spec.pattern_eps, z0[i, r]))
                else:                                                # z0 + dz <= max(-eps, z0)
                    row[:n_p] = Z[i, r]
                    A.append(row), ub.append(max(-spec.pattern_eps, z0[i, r]) - z0[i, r])
    cost = np.zeros(n_x)
    cost[n_p:n_p + n_d] = w_l1
    cost[-1] = w_inf
    bound = spec.param_bound - spec.bound_slack
    bounds = [(-bound, bound)] * n_p + [(0, None)] * (n_d + 1)
    res = linprog(cost, A_ub=np.array(A), b_ub=np.array(ub), bounds=bounds, method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("hidden", [None, 6])
@pytest.mark.parametrize("n_pts, seed", [(2, 0), (3, 1), (4, 2)])
def test_every_formulation_matches_the_dense_reference(objective, hidden, n_pts, seed):
    spec = random_spec(n_pts, hidden, objective, seed)
    ref = reference_optimum(spec)
    for formulation in ("straightforward", "colgen", "ipm", "auto"):
        sol = solve_repair_lp(spec, formulation=formulation)
        assert sol.objective == pytest.approx(ref, rel=1e-6, abs=1e-9), (formulation, sol.formulation)
