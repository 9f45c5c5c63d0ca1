"""What a sweep varies: the defaults of a grid sweep, the repair settings of one run or chain, their grid and
its checks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ..data import CLASS_NAMES
from ..editsets import SWEEP_TYPES, parse_sweep_type
from ..errors import UsageError
from ..model import layer_position, resolve_layer
from ..repair import OBJECTIVES
from ..repair.types import METHODS, preserve_size

# Every default of a grid sweep, in one place. The README's `experiment_runner.py --dataset synthetic` runs this
# grid: 3 + 2 x 3 = 9 runs of the canonical model's last layer (the README gives its time).
DEFAULT_SIZES = (10, 50, 100)            # requested edit-set sizes (actual size may be smaller: --sizing flexible)
DEFAULT_TYPES = ("misclassified", "class_homogeneous_incorrect")   # see editsets.SWEEP_TYPES
DEFAULT_CLASSES = (3, 5)                 # cat, dog: target classes of the class-homogeneous types
DEFAULT_BOUNDS = (5.0,)                  # max |change| of every edited parameter (APRNN's --param-bound)
DEFAULT_MARGINS = (2.0,)                 # logit[target] - logit[other] required on every edit image
DEFAULT_LAYERS = ("classifier.6",)       # the last Linear: a pure LP (no activation-pattern rows)
DEFAULT_METHODS = ("aprnn",)             # "aprnn" (provable LP) or "ft" (fine-tuning baseline)
DEFAULT_PRESERVES = (0,)                 # preserve-set sizes: correctly classified images kept correct (0 = none)
DEFAULT_PRESERVE_MARGIN = 2.0            # D: preserve images keep margin >= min(D, base margin) (RepairConfig's);
#                                          ids say D unless it is 0 (_p1000_d2), so rows of sweeps with D 0 stay apart
DEFAULT_PRESERVE_SPLIT = "train"         # split the preserve sets come from (test would contaminate the drawdown)
DEFAULT_OBJECTIVE = "linf+l1n"           # APRNN's LP objective (repair.OBJECTIVES); the others get ids _o<name>
DEFAULT_OBJECTIVES = (DEFAULT_OBJECTIVE,)
DEFAULT_SEEDS = (0,)                     # edit-set draws (same seed: smaller sets nested in larger ones)
DEFAULT_SIZING = "flexible"              # flexible: take what exists; strict: fewer candidates is a failed run
DEFAULT_HOLDOUT_FRACTION = 0.5           # share of the candidates kept out of the edit set for generalization
DEFAULT_EDIT_SPLIT = "test"              # split the edit sets are drawn from (drawdown = the rest of the test split)


@dataclass(frozen=True)
class RepairSettings:
    """What one sweep run (grid.RunSpec) or stochastic chain (stochastic.ChainSpec) repairs with."""

    repair_set_type: str
    target_class: int | None
    param_bound: float
    margin: float
    layer: str
    method: str
    seed: int
    solver: str
    preserve: int | str = 0              # preserve-set size (0: plain repair), or "all"
    preserve_margin: float = DEFAULT_PRESERVE_MARGIN
    preserve_split: str = DEFAULT_PRESERVE_SPLIT
    objective: str = DEFAULT_OBJECTIVE   # the LP's objective (aprnn; fine-tuning has none and keeps the default)

    @property
    def settings_tag(self) -> str:
        """These settings as an id part: class, bound, margin, layer, seed, method, solver, only with a preserve set
        its size, margin and split, and only with another objective than APRNN's ``_o<objective>`` (so the ids of
        plain runs are those of sweeps made before preserve sets and objectives were dimensions)."""
        cls = "-" if self.target_class is None else self.target_class
        tag = (f"c{cls}_b{self.param_bound:g}_m{self.margin:g}_l{layer_position(self.layer)}_s{self.seed}"
               f"_{self.method}_{self.solver}")
        if self.preserve:
            tag += f"_p{self.preserve}" + (f"_d{self.preserve_margin:g}" if self.preserve_margin else "")
            tag += "" if self.preserve_split == DEFAULT_PRESERVE_SPLIT else f"_{self.preserve_split}"
        return tag + ("" if self.objective == DEFAULT_OBJECTIVE else f"_o{self.objective}")


def _values(one_or_more) -> list:
    """A grid dimension given as one value or several, without repeats."""
    return list(dict.fromkeys([one_or_more] if isinstance(one_or_more, (str, int, float)) else one_or_more))


def settings_grid(kind, classes, bounds, margins, layers, methods, seeds, solvers, preserves=DEFAULT_PRESERVES,
                  preserve_margin=DEFAULT_PRESERVE_MARGIN, preserve_split=DEFAULT_PRESERVE_SPLIT,
                  objectives=DEFAULT_OBJECTIVES) -> list[dict]:
    """The RepairSettings fields of every combination for one repair-set type (``misclassified`` has no class);
    ``solvers``, ``preserve_margin`` and ``objectives``: one value or several (grid dimensions). A preserve margin
    is a dimension of the runs with a preserve set only, an objective one of the LP (aprnn) runs only: fine-tuning
    has no objective, so its runs are not repeated per objective."""
    targets = [None] if SWEEP_TYPES[kind][0] == "misclassified" else list(dict.fromkeys(classes))
    kept = [(0, DEFAULT_PRESERVE_MARGIN)] * (0 in [preserve_size(p) for p in _values(preserves)]) + [
        (p, float(d)) for p in map(preserve_size, _values(preserves)) if p != 0 for d in _values(preserve_margin)]
    runs = [(method, objective) for method in methods
            for objective in (_values(objectives) if method == "aprnn" else [DEFAULT_OBJECTIVE])]
    return [dict(repair_set_type=kind, target_class=cls, param_bound=float(bound), margin=float(margin),
                 layer=resolve_layer(layer), method=method, seed=int(seed), solver=solver, preserve=preserve,
                 preserve_margin=d, preserve_split=preserve_split, objective=objective)
            for cls, bound, margin, layer, (method, objective), solver, (preserve, d), seed in itertools.product(
                targets, bounds, margins, layers, runs, _values(solvers), kept, seeds)]


def check_settings(types, sizes, classes, bounds, margins, methods, preserves=DEFAULT_PRESERVES,
                   preserve_margin=DEFAULT_PRESERVE_MARGIN, preserve_split=DEFAULT_PRESERVE_SPLIT,
                   objectives=DEFAULT_OBJECTIVES) -> None:
    """The checks of a grid's dimensions (a stochastic sweep passes ``sizes=[1]``); UsageError naming the flag."""
    for name in types:
        parse_sweep_type(name)
    for method in methods:
        if method not in METHODS:
            raise UsageError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if any(int(s) < 1 for s in sizes):
        raise UsageError("--repair-set-sizes must be positive")
    if any(c not in range(len(CLASS_NAMES)) for c in classes):
        raise UsageError(f"--target-classes must lie in 0-9 (got {list(classes)})")
    if any(not b > 0 for b in bounds) or any(not m >= 0 for m in margins):
        raise UsageError("--param-bounds must be positive and --margins non-negative")
    for p in _values(preserves):
        preserve_size(p)
    if not all(d >= 0 for d in _values(preserve_margin)):
        raise UsageError("--preserve-margins must be non-negative")
    for objective in _values(objectives):
        if objective not in OBJECTIVES:
            raise UsageError(f"unknown objective {objective!r} (--objectives): choose one of {', '.join(OBJECTIVES)}")
    if preserve_split not in ("train", "test"):
        raise UsageError(f"unknown --preserve-split {preserve_split!r}: choose train or test")
    if any(SWEEP_TYPES[t][0] == "by-class" for t in types) and not classes:
        raise UsageError("class-homogeneous repair-set types need --target-classes")
