"""The APRNN repair LP's problem (:class:`LPSpec`), its solution (:class:`LPSolution`), the objective's weights and
the margin helpers every formulation shares (pure numpy; no torch).

The LP (docs/DESIGN.md, "The repair LP"), layers k..m numbered locally 0..L-1:
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

from dataclasses import dataclass, field, replace

import numpy as np

from alexnet_repair.errors import UsageError
from alexnet_repair.solvers.base import SolveResult, Status

OBJECTIVES = ("linf+l1n", "l1", "linf", "params-only")
FORMULATIONS = ("auto", "straightforward", "colgen", "ipm")


def check_formulation(formulation: str, solver: str = "auto", algorithm: str = "auto") -> None:
    """UsageError for a formulation that cannot honour the named solver: ``ipm`` is the toolkit's own solver."""
    if formulation not in FORMULATIONS:
        raise UsageError(f"unknown formulation {formulation!r}; choose one of {', '.join(FORMULATIONS)}")
    if formulation == "ipm" and (solver != "auto" or algorithm != "auto"):
        raise UsageError(f"--formulation ipm is the toolkit's own interior-point solver (builtin-ipm): it cannot "
                         f"run {'--solver ' + solver if solver != 'auto' else '--algorithm ' + algorithm}; use "
                         f"--solver auto, or --formulation colgen|straightforward with that solver")


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
    # The preserve set (drawdown guard): images that must keep their label with their preserve margin after the
    # repair; their output changes carry no objective weight. solve_repair_lp adds them lazily as extra points.
    preserve_inputs: np.ndarray | None = None  # (P, in_k) float64
    preserve_labels: np.ndarray | None = None  # (P,) int64
    preserve_margin: float | np.ndarray = 0.0  # one margin for all, or (P,) one per preserve image
    n_edit: int | None = None  # points 0..n_edit-1 are edit points, the rest preserve points (None: all edit)
    point_preserve_margins: np.ndarray | None = None  # (N - n_edit,) margins of the preserve points among ``inputs``

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
        if self.preserve_inputs is not None:
            # float32 features stay float32 (and shared with the preserve set's): every use converts its chunk, and
            # float32 -> float64 is exact, so the LP is the same; a float64 copy of 45,000 images is 1.5 GB
            kind = np.float32 if np.asarray(self.preserve_inputs).dtype == np.float32 else np.float64
            self.preserve_inputs = np.asarray(self.preserve_inputs, dtype=kind).reshape(-1, self.inputs.shape[1])
            self.preserve_labels = np.asarray(self.preserve_labels, dtype=np.int64).reshape(-1)
            if self.preserve_labels.shape != (self.preserve_inputs.shape[0],):
                raise UsageError("preserve labels do not match the preserve inputs")
        if self.param_bound <= self.bound_slack:
            raise UsageError(f"param_bound {self.param_bound} must exceed bound_slack {self.bound_slack}")

    @property
    def bound(self) -> float:
        """The bound on every change used inside the LP."""
        return self.param_bound - self.bound_slack

    @property
    def n_edit_points(self) -> int:
        """Points that are edit points (the first ones); the rest are preserve points."""
        return self.inputs.shape[0] if self.n_edit is None else self.n_edit

    @property
    def n_preserve(self) -> int:
        """Size of the whole preserve set (points of it may or may not be in ``inputs``)."""
        return 0 if self.preserve_inputs is None else self.preserve_inputs.shape[0]

    def point_margins(self) -> np.ndarray:
        """(N,) the margin each point's rows ask for, slack included: edit points ``margin``, preserve points their
        own (``point_preserve_margins``, else ``preserve_margin``)."""
        out = np.empty(self.inputs.shape[0])
        out[: self.n_edit_points] = self.margin
        out[self.n_edit_points:] = self.preserve_margin if self.point_preserve_margins is None else \
            self.point_preserve_margins
        return out + self.margin_slack

    def preserve_margins(self) -> np.ndarray:
        """(P,) the margin each image of the preserve set keeps."""
        return np.broadcast_to(np.asarray(self.preserve_margin, dtype=np.float64), (self.n_preserve,))

    def with_preserve_points(self, chosen: np.ndarray) -> "LPSpec":
        """The LP over the edit points plus the preserve points ``chosen`` (indices into the preserve set)."""
        chosen = np.asarray(chosen, dtype=np.int64)
        return replace(self, inputs=np.vstack([self.inputs, self.preserve_inputs[chosen]]),
                       targets=np.r_[self.targets, self.preserve_labels[chosen]], n_edit=self.inputs.shape[0],
                       point_preserve_margins=self.preserve_margins()[chosen], preserve_inputs=None,
                       preserve_labels=None)

    def preserve_only(self) -> "LPSpec":
        """The preserve set as the points of a spec (for checking its rows at a solution)."""
        return replace(self, inputs=self.preserve_inputs, targets=self.preserve_labels, n_edit=0,
                       point_preserve_margins=self.preserve_margins().copy(), preserve_inputs=None,
                       preserve_labels=None)

    def points(self, lo: int, hi: int) -> "LPSpec":
        """The spec of points lo..hi-1 alone (no preserve set beyond them): for checks in chunks."""
        n_edit = self.n_edit_points
        own = None if self.point_preserve_margins is None else \
            self.point_preserve_margins[max(lo - n_edit, 0):max(hi - n_edit, 0)]
        return replace(self, inputs=self.inputs[lo:hi], targets=self.targets[lo:hi],
                       n_edit=int(np.clip(n_edit - lo, 0, hi - lo)), point_preserve_margins=own,
                       preserve_inputs=None, preserve_labels=None)


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
    preserve_points: int = 0  # preserve images whose rows entered the LP (lazily; all N x (C-1) rows hold)
    preserve_rows: int = 0  # margin rows of those images in the last LP


@dataclass
class ObjectiveTerms:
    """Weights of the objective: w_inf * ||d||_inf + w_l1 * ||d||_1; d includes the logit changes iff outputs."""

    outputs: bool
    w_inf: float
    w_l1: float
    length: int


def objective_terms(spec: LPSpec) -> ObjectiveTerms:
    n_pts, n_cls = spec.n_edit_points, spec.weights[-1].shape[0]  # preserve points' outputs carry no weight
    n_r = spec.weights[0].shape[0] if spec.rows is None else spec.rows.size
    n_params = n_r * (spec.inputs.shape[1] + 1) + sum(w.shape[0] for w in spec.weights[1:])
    n_all = n_params + n_pts * n_cls
    return {
        "linf+l1n": ObjectiveTerms(True, 1.0, 1.0 / n_all, n_all),
        "l1": ObjectiveTerms(True, 0.0, 1.0, n_all),
        "linf": ObjectiveTerms(True, 1.0, 0.0, n_all),
        "params-only": ObjectiveTerms(False, 1.0, 1.0 / n_params, n_params),
    }[spec.objective]


def other_classes(targets: np.ndarray, n_cls: int) -> np.ndarray:
    """(N, C-1) the classes other than each target, ascending: the order of the margin rows of a point."""
    table = np.array([[j for j in range(n_cls) if j != t] for t in range(n_cls)], dtype=np.int64)
    return table[np.asarray(targets, dtype=np.int64)].reshape(-1, n_cls - 1)


def row_margins(y: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, C-1) y[t_i] - y[c] for every other class c, in margin-row order."""
    n = y.shape[0]
    return y[np.arange(n), targets][:, None] - np.take_along_axis(y, other_classes(targets, y.shape[1]), 1)


def margins(y: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) y[t_i] - the largest other y (numpy; evaluate.margins_of is the torch twin)."""
    return row_margins(y, targets).min(1, initial=np.inf) if y.shape[0] else np.zeros(0)
