"""The APRNN repair LP: problem spec, solution, the straightforward reference encoding and
the entry point :func:`solve_repair_lp` (pure numpy / scipy; no torch).

The LP (ARCHITECTURE.md, "The repair LP"), layers k..m numbered locally 0..L-1:
variables dW (rows R of W_k), db_k[R], db_j (j > k), each in [-B, B]; the ReLU patterns
after every layer >= k fixed to the original network's; logits y_i; margin rows
y_i[t_i] - y_i[c] >= margin; objective over d = (all logit changes, all parameter changes):

* ``linf+l1n`` (default, APRNN): ||d||_inf + ||d||_1 / len(d)
* ``l1``: ||d||_1;  ``linf``: ||d||_inf
* ``params-only``: ||p||_inf + ||p||_1 / len(p) over the parameter changes p only.

Safety settings (so that the float32-rounded saved model verifies): the LP uses
``margin + margin_slack``, parameter bound ``param_bound - bound_slack`` and pattern rows
that keep active units >= min(pattern_eps, z0) and inactive ones <= max(-pattern_eps, z0).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from alexnet_repair.errors import UsageError
from alexnet_repair.repair import blocks
from alexnet_repair.solvers import Problem, SolveOptions, SolveResult, Status, solve

log = logging.getLogger(__name__)

OBJECTIVES = ("linf+l1n", "l1", "linf", "params-only")
FORMULATIONS = ("auto", "straightforward", "colgen", "ipm")


@dataclass
class LPSpec:
    """One repair problem. Shapes: N points, layer k has in_k inputs; weights[l] (out_l, in_l)."""

    inputs: np.ndarray  # (N, in_k) float64: input a_i of the edited layer k
    targets: np.ndarray  # (N,) int64 target labels
    weights: list[np.ndarray]  # [W_k, ..., W_m], ReLU between consecutive layers
    biases: list[np.ndarray]  # [b_k, ..., b_m]
    rows: np.ndarray | None = None  # editable rows R of W_k / b_k; None = all
    param_bound: float = 5.0  # B: every parameter change in [-B, B]
    margin: float = 2.0  # y[t] - y[c] >= margin for every c != t
    objective: str = "linf+l1n"
    margin_slack: float = 1e-4  # the LP asks for margin + margin_slack (float32 rounding headroom)
    bound_slack: float = 1e-5  # the LP bounds changes by param_bound - bound_slack
    pattern_eps: float = 1e-4  # kept distance of hidden pre-activations from 0 (see module doc)

    def __post_init__(self) -> None:
        self.inputs = np.asarray(self.inputs, dtype=np.float64)
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self.weights = [np.asarray(w, dtype=np.float64) for w in self.weights]
        self.biases = [np.asarray(b, dtype=np.float64) for b in self.biases]
        if self.objective not in OBJECTIVES:
            raise UsageError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.inputs.ndim != 2 or self.inputs.shape[1] != self.weights[0].shape[1]:
            raise UsageError(f"inputs {self.inputs.shape} do not fit layer weights {self.weights[0].shape}")
        if self.targets.shape != (self.inputs.shape[0],):
            raise UsageError(f"targets {self.targets.shape} do not match {self.inputs.shape[0]} inputs")
        n_classes = self.weights[-1].shape[0]
        if self.targets.size and (self.targets.min() < 0 or self.targets.max() >= n_classes):
            raise UsageError(f"target labels must lie in 0..{n_classes - 1}")
        if self.rows is not None:
            self.rows = np.unique(np.asarray(self.rows, dtype=np.int64))
            if self.rows.size == 0 or self.rows[0] < 0 or self.rows[-1] >= self.weights[0].shape[0]:
                raise UsageError(f"editable rows must be a non-empty subset of 0..{self.weights[0].shape[0] - 1}")
        if self.param_bound <= self.bound_slack:
            raise UsageError(f"param_bound {self.param_bound} must exceed bound_slack {self.bound_slack}")

    @property
    def bound(self) -> float:
        """The bound on every change used inside the LP."""
        return self.param_bound - self.bound_slack


@dataclass
class LPSolution:
    status: Status
    dW: np.ndarray | None  # (|R|, in_k) change of the rows R of W_k
    db: list[np.ndarray] | None  # [db_k (|R|,), db_{k+1} (out_{k+1},), ..., db_m]
    objective: float | None  # the requested objective at the solution (LP scale)
    solve: SolveResult | None  # the last solve
    build_time: float
    solve_time: float
    formulation: str
    n_vars: int  # size of the largest LP solved
    n_rows: int
    nnz: int
    message: str = ""
    n_solves: int = 0
    iterations: dict = field(default_factory=dict)  # summed over all solves


@dataclass
class ObjectiveTerms:
    """Weights of the objective: w_inf * ||d||_inf + w_l1 * ||d||_1; d includes the logit changes iff outputs."""

    outputs: bool
    w_inf: float
    w_l1: float
    length: int


def objective_terms(spec: LPSpec) -> ObjectiveTerms:
    n_pts, n_cls = spec.inputs.shape[0], spec.weights[-1].shape[0]
    n_r = spec.weights[0].shape[0] if spec.rows is None else spec.rows.size
    n_params = n_r * (spec.inputs.shape[1] + 1) + sum(w.shape[0] for w in spec.weights[1:])
    n_all = n_params + n_pts * n_cls
    return {
        "linf+l1n": ObjectiveTerms(True, 1.0, 1.0 / n_all, n_all),
        "l1": ObjectiveTerms(True, 0.0, 1.0, n_all),
        "linf": ObjectiveTerms(True, 1.0, 0.0, n_all),
        "params-only": ObjectiveTerms(False, 1.0, 1.0 / n_params, n_params),
    }[spec.objective]


def output_changes(net: blocks.Network, dW: np.ndarray, db: list[np.ndarray]) -> np.ndarray:
    """Logit changes v (N, C) of the pattern-fixed network for the parameter changes (float64)."""
    spec = net.spec
    u = spec.inputs @ dW.T + db[0]
    if net.n_layers == 1:
        v = np.zeros((u.shape[0], spec.weights[0].shape[0]))
        v[:, net.rows] = u
        return v
    return blocks.propagate(net, u, db)[-1]


def objective_value(net: blocks.Network, dW: np.ndarray, db: list[np.ndarray]) -> float:
    """The requested objective of ``net.spec`` at (dW, db), recomputed from the parameters."""
    terms = objective_terms(net.spec)
    parts = [dW.ravel()] + [b.ravel() for b in db]
    if terms.outputs:
        parts.append(output_changes(net, dW, db).ravel())
    d = np.abs(np.concatenate(parts))
    return float(terms.w_inf * d.max(initial=0.0) + terms.w_l1 * d.sum())


def encode_straightforward(spec: LPSpec, net: blocks.Network | None = None):
    """The reference encoding: every variable and every row of the LP, |.| and max by epigraph rows.

    Returns (Problem, decode) with ``decode(x) -> (dW (|R|, in_k), [db_0, ..., db_{L-1}])``.
    """
    net = net or blocks.original_network(spec)
    n_pts, n_in = spec.inputs.shape
    n_layers, n_r = net.n_layers, net.rows.size
    n_cls = spec.weights[-1].shape[0]
    terms = objective_terms(spec)
    cols = blocks.Layout()
    dw = cols.add("dW", (n_r, n_in))
    db = [cols.add("db0", (n_r,))] + [cols.add(f"db{l}", (spec.weights[l].shape[0],)) for l in range(1, n_layers)]
    u = cols.add("u", (n_pts, n_r))
    v_cols = np.full((n_pts, n_cls), -1)
    if n_layers == 1:
        v_cols[:, net.rows] = u
    else:
        v_cols[:] = cols.add("v", (n_pts, n_cls))
    n_base = cols.n
    lo = np.full(n_base, -spec.bound)
    hi = np.full(n_base, spec.bound)
    lo[u.ravel()], hi[u.ravel()] = -np.inf, np.inf
    if n_layers > 1:
        plo, phi = blocks.pattern_change_bounds(net.z0[0][:, net.rows], net.active[0][:, net.rows], spec.pattern_eps)
        lo[u.ravel()], hi[u.ravel()] = plo.ravel(), phi.ravel()
        lo[v_cols.ravel()], hi[v_cols.ravel()] = -np.inf, np.inf

    # u[i, r] - sum_j a_ij dW[r, j] - db_0[r] = 0
    r_sel, j_sel = np.divmod(np.arange(n_r * n_in), n_in)
    a_dw = blocks.weight_block(sp.csr_matrix(spec.inputs.T), r_sel, j_sel, n_r)
    n_def = n_pts * n_r
    def_rows = sp.hstack([a_dw, sp.csc_matrix((n_def, n_base - n_r * n_in))]).tocsr()
    def_rows += sp.csr_matrix((np.ones(n_def), (np.arange(n_def), u.ravel())), shape=(n_def, n_base))
    def_rows -= sp.csr_matrix((np.ones(n_def), (np.arange(n_def), np.tile(db[0], n_pts))), shape=(n_def, n_base))
    blocks_a, blocks_lo, blocks_hi = [def_rows], [np.zeros(n_def)], [np.zeros(n_def)]
    for layer in range(1, n_layers):  # later layers: logits definition, or pattern rows
        pts, units = np.divmod(np.arange(n_pts * spec.weights[layer].shape[0]), spec.weights[layer].shape[0])
        aff = blocks.affine_rows(net, layer, pts, units, u, db, n_base)
        if layer == n_layers - 1:
            eye = sp.csr_matrix((np.ones(pts.size), (np.arange(pts.size), v_cols.ravel())), shape=aff.shape)
            blocks_a.append(eye - aff)
            blocks_lo.append(np.zeros(pts.size))
            blocks_hi.append(np.zeros(pts.size))
        else:
            plo, phi = blocks.pattern_change_bounds(net.z0[layer], net.active[layer], spec.pattern_eps)
            blocks_a.append(aff)
            blocks_lo.append(plo.ravel())
            blocks_hi.append(phi.ravel())
    m_a, m_lo, _ = blocks.margin_rows(v_cols, None, spec.targets, net.z0[-1], spec.margin + spec.margin_slack, n_base)
    blocks_a.append(m_a)
    blocks_lo.append(m_lo)
    blocks_hi.append(np.full(m_lo.size, np.inf))

    # epigraph: e >= +-x for every entry x of d, t >= e
    d_idx = [dw.ravel()] + [b.ravel() for b in db]
    if terms.outputs:
        d_idx.append(v_cols.ravel()[v_cols.ravel() >= 0])
    d_idx = np.concatenate(d_idx)
    n_d = d_idx.size
    e0 = n_base
    t_col = n_base + n_d if terms.w_l1 else n_base
    n_cols = t_col + (1 if terms.w_inf else 0)
    rows_epi = []
    ar = np.arange(n_d)
    if terms.w_l1:
        for sgn in (1.0, -1.0):  # e - sgn * x >= 0
            rows_epi.append(sp.csr_matrix((np.r_[np.ones(n_d), -sgn * np.ones(n_d)],
                                           (np.r_[ar, ar], np.r_[e0 + ar, d_idx])), shape=(n_d, n_cols)))
        if terms.w_inf:  # t - e >= 0
            rows_epi.append(sp.csr_matrix((np.r_[np.ones(n_d), -np.ones(n_d)],
                                           (np.r_[ar, ar], np.r_[np.full(n_d, t_col), e0 + ar])), shape=(n_d, n_cols)))
    else:
        for sgn in (1.0, -1.0):  # t - sgn * x >= 0
            rows_epi.append(sp.csr_matrix((np.r_[np.ones(n_d), -sgn * np.ones(n_d)],
                                           (np.r_[ar, ar], np.r_[np.full(n_d, t_col), d_idx])), shape=(n_d, n_cols)))
    a_base = sp.vstack(blocks_a).tocsr()
    a_base.resize((a_base.shape[0], n_cols))
    A = sp.vstack([a_base] + rows_epi).tocsc()
    row_lo = np.concatenate(blocks_lo + [np.zeros(n_d)] * len(rows_epi))
    row_hi = np.concatenate(blocks_hi + [np.full(n_d, np.inf)] * len(rows_epi))
    c = np.zeros(n_cols)
    col_lo = np.r_[lo, np.zeros(n_cols - n_base)]
    col_hi = np.r_[hi, np.full(n_cols - n_base, np.inf)]
    if terms.w_l1:
        c[e0:e0 + n_d] = terms.w_l1
    if terms.w_inf:
        c[t_col] = terms.w_inf
    problem = Problem(c=c, A=A, row_lo=row_lo, row_hi=row_hi, col_lo=col_lo, col_hi=col_hi,
                      name=f"repair-straightforward-{spec.objective}")

    def decode(x: np.ndarray):
        return x[dw], [x[b] for b in db]

    return problem, decode


def _solution_from(spec, net, res: SolveResult, decode, formulation, build_time, problem) -> LPSolution:
    sol = LPSolution(res.status, None, None, None, res, build_time, res.runtime, formulation,
                     res.n_vars, res.n_rows, res.nnz, res.message, 1, dict(res.iterations or {}))
    if res.status == Status.OPTIMAL and res.x is not None:
        sol.dW, sol.db = decode(res.x)
        sol.objective = float(res.objective)
    return sol


def solve_repair_lp(spec: LPSpec, solver: str = "auto", options: SolveOptions | None = None,
                    formulation: str = "auto") -> LPSolution:
    """Solve the repair LP of ``spec``; the returned dW/db satisfy every row of the exact LP.

    formulation: ``straightforward`` (reference, slow at scale), ``colgen`` (column generation
    over dW with lazy rows; same optimum), ``auto`` = colgen.
    """
    if formulation not in FORMULATIONS:
        raise UsageError(f"unknown formulation {formulation!r}; choose one of {', '.join(FORMULATIONS)}")
    options = options or SolveOptions()
    t0 = time.perf_counter()
    net = blocks.original_network(spec)
    if formulation == "straightforward":
        problem, decode = encode_straightforward(spec, net)
        build = time.perf_counter() - t0
        log.info("straightforward LP: %d vars, %d rows, %d nnz (built in %.2fs)",
                 problem.A.shape[1], problem.A.shape[0], problem.A.nnz, build)
        res = solve(problem, solver=solver, options=options)
        return _solution_from(spec, net, res, decode, formulation, build, problem)
    from alexnet_repair.repair.colgen import solve_colgen
    from alexnet_repair.repair.fastlp import ipm_applicable, solve_fast

    if formulation in ("ipm", "auto") and ipm_applicable(spec):
        try:
            return solve_fast(spec, net, solver=solver, options=options)
        except np.linalg.LinAlgError as err:  # a numerically singular normal system: the exact path still works
            log.warning("structured IPM failed (%s): falling back to column generation", err)
    if formulation == "ipm":
        log.info("the ipm formulation does not cover this case (objective %s, %d layers): using colgen",
                 spec.objective, len(spec.weights))
    return solve_colgen(spec, net, solver=solver, options=options)
