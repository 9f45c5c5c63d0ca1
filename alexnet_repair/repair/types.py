"""What a repair is asked (:class:`RepairConfig`) and what it reports (:class:`RepairResult`,
:class:`Verification`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from alexnet_repair.errors import UsageError
from alexnet_repair.model import AlexNet, resolve_layer
from alexnet_repair.repair.lp.spec import OBJECTIVES, check_formulation

# "partial": a verified model that fixes only some edit images (max-fixed, or fine-tuning below 100% efficacy)
METHODS = ("aprnn", "ft")  # "aprnn": the provable LP repair; "ft": the fine-tuning baseline on the same parameters
STATUSES = ("success", "partial", "infeasible", "time_limit", "verify_failed", "error")


def preserve_size(value) -> int | str:
    """A --preserve value: a count >= 0, or "all" (every image of the split the base model gets right)."""
    if str(value).strip().lower() == "all":
        return "all"
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if count < 0 or str(count) != str(value).strip():
        raise UsageError(f"--preserve {value!r}: give a count >= 0 or 'all'")
    return count


@dataclass
class RepairConfig:
    layer: str = "classifier.6"      # classifier Linear layer to edit (classifier.1 / .4 / .6)
    rows: str | None = None          # editable output rows of that layer: None = all, "a:b", "i,j,k", or a count N
    param_bound: float = 5.0         # every parameter change in [-B, B]
    margin: float = 2.0              # logit[target] - logit[other] >= margin on every edit image
    objective: str = "linf+l1n"      # see repair.lp.OBJECTIVES
    solver: str = "auto"             # auto / highs / gurobi
    algorithm: str = "auto"          # solver algorithm (see solvers.SolveOptions)
    formulation: str = "auto"        # see repair.lp.FORMULATIONS
    time_limit: float | None = None  # seconds for the whole solve
    threads: int | None = None       # solver threads
    method: str = "aprnn"            # "aprnn" (the provable LP repair) or "ft" (fine-tuning baseline)
    on_infeasible: str = "fail"      # "fail", or "max-fixed": repair the largest fixable subset (MILP)
    preserve: int | str = 0          # preserve-set size: images that must keep their label (0 = plain APRNN), or
    #                                  "all": every image of the split the base model classifies correctly
    preserve_margin: float = 2.0     # D: each preserve image keeps label logit - every other logit >= min(D, its
    #                                  margin on the base model). 2 (the default --margin): with D 0 the kept images
    #                                  end on the decision boundary, where a 1/255 pixel change flips them, and the
    #                                  drawdown is 3x larger (bench/README.md, "Session 10")
    preserve_split: str = "train"    # split the preserve set is drawn from (test contaminates the drawdown)

    def validate(self) -> None:
        self.layer = resolve_layer(self.layer)
        if not np.isfinite(self.param_bound) or self.param_bound <= 0:
            raise UsageError(f"--param-bound must be a positive number (got {self.param_bound})")
        if not np.isfinite(self.margin) or self.margin < 0:
            raise UsageError(f"--margin must be >= 0 (got {self.margin})")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"unknown objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}: choose aprnn or ft")
        if self.on_infeasible not in ("fail", "max-fixed"):
            raise UsageError(f"unknown --on-infeasible {self.on_infeasible!r}: choose fail or max-fixed")
        self.preserve = preserve_size(self.preserve)
        if not np.isfinite(self.preserve_margin) or self.preserve_margin < 0:
            raise UsageError(f"--preserve-margin must be >= 0 (got {self.preserve_margin})")
        if self.preserve_split not in ("train", "test"):
            raise UsageError(f"unknown --preserve-split {self.preserve_split!r}: choose train or test")
        check_formulation(self.formulation, self.solver, self.algorithm)
        if self.time_limit is not None and self.time_limit <= 0:
            raise UsageError("--time-limit must be positive")


@dataclass
class Verification:
    ok: bool
    correct: int                 # edit images predicted as their target by the float32 model
    total: int
    min_margin: float            # smallest logit[target] - max other logit (float32)
    max_abs_change: float        # largest |new - old| over all parameters
    within_bound: bool
    untouched_identical: bool    # every parameter outside the editable set bit-identical
    pattern_flips: int           # hidden units after the edited layer whose ReLU state changed (|z0| > tol)
    reasons: list[str] = field(default_factory=list)
    fixed: int = 0               # edit images predicted as their target with at least the margin (of all ``total``)
    required: int = 0            # edit images the repair had to fix (all, or max-fixed's subset); min_margin is theirs
    preserve_total: int = 0      # preserve images checked
    preserve_kept: int = 0       # of them, still predicted as their label with the preserve margin
    preserve_min_margin: float = float("inf")
    preserve_min_excess: float = float("inf")  # least (margin - its required margin) over the preserve images

    @property
    def efficacy(self) -> float:
        return 100.0 * self.correct / self.total if self.total else float("nan")


@dataclass
class RepairResult:
    status: str                  # one of STATUSES
    message: str
    config: RepairConfig
    model: AlexNet | None = None           # the repaired float32 model (only when status == "success")
    verification: Verification | None = None
    rows: list[int] | None = None          # editable rows actually used
    objective: float | None = None
    build_time: float = 0.0                # seconds: features + encoding (everything but the solver)
    solve_time: float = 0.0                # seconds in the solver
    total_time: float = 0.0
    solver: str = ""
    solver_version: str = ""
    formulation: str = ""
    iterations: dict = field(default_factory=dict)
    n_vars: int = 0
    n_rows: int = 0
    nnz: int = 0
    n_solves: int = 0
    fixed_count: int | None = None               # edit images the returned model fixes (with the margin)
    unfixable_indices: list[int] | None = None   # positions in the edit set it does not fix (max-fixed: proven
    unfixable_labels: list[int] | None = None    #   unfixable within the bound when mip_gap == 0), and their targets
    details: dict = field(default_factory=dict)  # method-specific: FT steps/loss, the MILP's count, bound and gap
    preserve_size: int = 0                       # preserve images the repair had to keep
    preserve_rows_added: int = 0                 # preserve margin rows that entered the LP (lazily)
    preserve_indices: list[int] | None = None    # their dataset indices (in config.preserve_split)

    @property
    def preserve_kept(self) -> int | None:
        """Preserve images the returned model keeps (label with the preserve margin)."""
        return None if self.verification is None or not self.preserve_size else self.verification.preserve_kept

    @property
    def success(self) -> bool:
        return self.status == "success"

    def record(self) -> dict:
        """Everything but the model, as plain values for JSON / CSV."""
        out = {k: v for k, v in asdict(self).items() if k not in ("model", "verification", "config")}
        out["config"] = asdict(self.config)
        out["success"] = self.success
        if self.verification is not None:
            out["verification"] = asdict(self.verification)
            out.update(efficacy=self.verification.efficacy, min_margin=self.verification.min_margin,
                       max_abs_change=self.verification.max_abs_change)
        out["preserve_kept"] = self.preserve_kept
        return out
