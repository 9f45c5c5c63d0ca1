"""Grid sweeps: repair-set type x size x class x bound x margin x layer x method x seed, one CSV row per run.

This module defines the grid, the CSV columns and what a sweep computes once; :mod:`.gridrun` runs it.
A run's key is its ``experiment_id`` (e.g. ``misclassified_n50_c-_b5_m2_l6_s0_aprnn_auto``). Rerunning a sweep
skips every id already in the CSV (failed ones too, unless ``retry_failed``); rows are appended one complete
fsynced line at a time by the parent process only, so a killed sweep loses at most its in-flight runs.
Settings that are not grid dimensions (checkpoint, dataset, edit split, sizing, objective, ...) form the
``sweep_key``: a CSV never mixes two of them. Shard I/N (1-based) takes grid positions I-1, I-1+N, ...
The sweep-wide work is done once: one base-model pass over the test split (kept as a
:class:`~alexnet_repair.featcache.FeatureCache`) and one over the edit split; edit sets are drawn from it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .csvlog import is_true, read_csv
from .data import CLASS_NAMES, Split, load_split
from .editsets import SWEEP_TYPES, parse_sweep_type
from .errors import UsageError
from .evaluate import Predictions, predict
from .featcache import FeatureCache, classifier_stop
from .model import file_sha256, load_checkpoint, resolve_layer
from .paths import path_for, safe_name
from .provenance import versions
from .repair import RepairConfig

log = logging.getLogger(__name__)

SCHEMA = "alexnet_repair.sweep/1"   # written in every row; analysis refuses other schemas

# Every default of a grid sweep, in one place. The README's `experiment_runner.py --dataset synthetic` runs this
# grid: 3 + 2 x 3 = 9 runs of the canonical model's last layer, about 5 minutes on 2 busy CPU cores (measured).
DEFAULT_SIZES = (10, 50, 100)            # requested edit-set sizes (actual size may be smaller: --sizing flexible)
DEFAULT_TYPES = ("misclassified", "class_homogeneous_incorrect")   # see editsets.SWEEP_TYPES
DEFAULT_CLASSES = (3, 5)                 # cat, dog: target classes of the class-homogeneous types
DEFAULT_BOUNDS = (5.0,)                  # max |change| of every edited parameter (APRNN's --param-bound)
DEFAULT_MARGINS = (2.0,)                 # logit[target] - logit[other] required on every edit image
DEFAULT_LAYERS = ("classifier.6",)       # the last Linear: a pure LP (no activation-pattern rows)
DEFAULT_METHODS = ("aprnn",)             # "aprnn" (provable LP) or "ft" (fine-tuning baseline)
DEFAULT_SEEDS = (0,)                     # edit-set draws (same seed: smaller sets nested in larger ones)
DEFAULT_SIZING = "flexible"              # flexible: take what exists; strict: fewer candidates is a failed run
DEFAULT_HOLDOUT_FRACTION = 0.5           # share of the candidates kept out of the edit set for generalization
DEFAULT_EDIT_SPLIT = "test"              # split the edit sets are drawn from (drawdown = the rest of the test split)
METHODS = ("aprnn", "ft")

COLUMNS = [
    # identity
    "experiment_id", "timestamp", "schema", "sweep_key",
    # configuration (the earlier toolkit's column names first)
    "repair_set_type", "repair_set_focus", "requested_repair_set_size", "edit_set_sizing_strategy",
    "actual_repair_set_size", "edit_set_path", "target_class", "param_bound", "margin",
    "target_class_name", "layer", "method", "seed", "solver_requested", "objective", "dataset", "edit_split",
    "holdout_fraction", "candidates",
    # the earlier toolkit's results (accuracies in percent)
    "baseline_model_path", "baseline_accuracy_test_set", "baseline_accuracy_edit_set",
    "repair_runtime_seconds", "gurobi_barrier_iterations", "repair_successful",
    "repaired_model_path", "repaired_accuracy_test_set", "repaired_accuracy_edit_set",
    "repaired_accuracy_drawdown_set", "error_message",
    # solver and LP
    "status", "success", "solver", "solver_version", "formulation", "n_vars", "n_rows", "nnz", "n_solves",
    "build_time", "solve_time", "solver_iterations", "iterations", "objective_value",
    # verification and what the repair cost
    "min_margin", "saved_min_margin", "max_abs_change", "efficacy",
    "drawdown_set_size", "baseline_accuracy_drawdown_set", "drawdown",
    "holdout_size", "baseline_holdout_accuracy", "repaired_holdout_accuracy", "generalization",
    "per_class_change", "worst_class", "worst_class_name", "worst_class_change",
    "fixed_count", "unfixable_indices",
    # provenance
    "threads", "wall_time", "weights_sha256", "git_commit", "toolkit_version", "record_path",
]


@dataclass(frozen=True)
class RepairSettings:
    """What one sweep run (RunSpec) or stochastic chain (ChainSpec) repairs with."""

    repair_set_type: str
    target_class: int | None
    param_bound: float
    margin: float
    layer: str
    method: str
    seed: int
    solver: str

    @property
    def settings_tag(self) -> str:
        """These settings as an id part: class, bound, margin, layer, seed, method, solver."""
        cls = "-" if self.target_class is None else self.target_class
        return (f"c{cls}_b{self.param_bound:g}_m{self.margin:g}_l{classifier_stop(self.layer)}_s{self.seed}"
                f"_{self.method}_{self.solver}")


def settings_grid(kind, classes, bounds, margins, layers, methods, seeds, solver) -> list[dict]:
    """The RepairSettings fields of every combination for one repair-set type (``misclassified`` has no class)."""
    targets = [None] if SWEEP_TYPES[kind][0] == "misclassified" else list(dict.fromkeys(classes))
    return [dict(repair_set_type=kind, target_class=cls, param_bound=float(bound), margin=float(margin),
                 layer=resolve_layer(layer), method=method, seed=int(seed), solver=solver)
            for cls, bound, margin, layer, method, seed in itertools.product(targets, bounds, margins, layers,
                                                                             methods, seeds)]


@dataclass(frozen=True)
class RunSpec(RepairSettings):
    """One grid point."""

    size: int = 0

    @property
    def experiment_id(self) -> str:
        return safe_name(f"{self.repair_set_type}_n{self.size}_{self.settings_tag}")


@dataclass
class SweepSetup:
    """Sweep-wide settings (not grid dimensions). Those in :meth:`key` must match to resume into a CSV."""

    weights: str
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = True
    edit_split: str = DEFAULT_EDIT_SPLIT
    sizing: str = DEFAULT_SIZING
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    objective: str = "linf+l1n"
    rows: str | None = None
    formulation: str = "auto"
    algorithm: str = "auto"
    time_limit: float | None = None
    on_infeasible: str = "fail"          # "max-fixed": an infeasible LP becomes a MILP fixing the most images
    threads: int | None = None           # torch + solver threads per run (None: cores // jobs)
    keep_models: bool = False
    device: str = "cpu"
    record_dir: str | None = None        # where each run's JSON record goes (None: no records)
    output_file: str = "results/experiment.csv"   # the sweep CSV (names the folder of kept models)

    def key(self, weights_sha256: str) -> str:
        fields = {"weights_sha256": weights_sha256, "dataset": self.dataset, "edit_split": self.edit_split,
                  "sizing": self.sizing, "holdout_fraction": self.holdout_fraction, "objective": self.objective,
                  "rows": self.rows, "formulation": self.formulation, "time_limit": self.time_limit}
        if self.on_infeasible != "fail":     # (absent by default, so keys of earlier sweeps stay valid)
            fields["on_infeasible"] = self.on_infeasible
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class SweepContext:
    """Everything a run needs that the sweep computes once (shipped to each worker process)."""

    setup: SweepSetup
    weights_sha256: str
    sweep_key: str
    test: Split
    edit: Split                      # the split edit sets come from (the same object as ``test`` by default)
    base_edit: Predictions           # base model over the whole edit split
    cache: FeatureCache              # base model over the test split, with the swept layers' inputs
    versions: dict = field(default_factory=dict)


def repair_config(setup: SweepSetup, spec, threads: int | None) -> RepairConfig:
    """The RepairConfig of one run (grid RunSpec or stochastic ChainSpec) under ``setup``."""
    return RepairConfig(layer=spec.layer, rows=setup.rows, param_bound=spec.param_bound, margin=spec.margin,
                        objective=setup.objective, solver=spec.solver, algorithm=setup.algorithm,
                        formulation=setup.formulation, time_limit=setup.time_limit, threads=setup.threads or threads,
                        method=spec.method, on_infeasible=setup.on_infeasible)


def method_args(setup: SweepSetup, seed: int) -> Namespace:
    """What repair.run_method reads from a script's arguments (fine-tuning: data for replay, seed);
    the --ft-* settings stay at their defaults in sweeps."""
    return Namespace(dataset=setup.dataset, data_dir=setup.data_dir, no_download=not setup.download, seed=seed,
                     quiet=True)


def build_grid(types=DEFAULT_TYPES, sizes=DEFAULT_SIZES, classes=DEFAULT_CLASSES, bounds=DEFAULT_BOUNDS,
               margins=DEFAULT_MARGINS, layers=DEFAULT_LAYERS, methods=DEFAULT_METHODS, seeds=DEFAULT_SEEDS,
               solver: str = "auto") -> list[RunSpec]:
    """The grid in a fixed order (small sizes first); ``misclassified`` ignores ``classes``."""
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
    if any(SWEEP_TYPES[t][0] == "by-class" for t in types) and not classes:
        raise UsageError("class-homogeneous repair-set types need --target-classes")
    specs = [RunSpec(size=size, **settings) for size, kind in itertools.product(sorted(set(map(int, sizes))), types)
             for settings in settings_grid(kind, classes, bounds, margins, layers, methods, seeds, solver)]
    return list(dict.fromkeys(specs))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'2/4' -> (2, 4): the 2nd of 4 slices (1-based, like a SLURM array 1-4)."""
    if text is None:
        return None
    try:
        index, count = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: use I/N, e.g. 1/4 (I from 1 to N)") from None
    if not 1 <= index <= count:
        raise UsageError(f"--shard {text!r}: I must lie in 1..N")
    return index, count


def shard(specs: list, index: int, count: int) -> list:
    """The ``index``-th (1-based) of ``count`` round-robin slices: together they partition ``specs`` exactly."""
    return [s for i, s in enumerate(specs) if i % count == index - 1]


def prepare_context(setup: SweepSetup, layers, progress: bool = True, weights_sha256: str | None = None
                    ) -> SweepContext:
    """Load the model and splits and do the sweep's base-model passes (test split and edit split)."""
    base = load_checkpoint(setup.weights)
    sha = weights_sha256 or file_sha256(setup.weights)
    test = load_split(setup.dataset, "test", setup.data_dir, download=setup.download)
    stops = {classifier_stop(resolve_layer(layer)) for layer in layers}
    cache = FeatureCache.build(base, test, stops, device=setup.device)
    if setup.edit_split == "test":
        edit, base_edit = test, cache.base_predictions()
    else:
        edit = load_split(setup.dataset, setup.edit_split, setup.data_dir, download=setup.download)
        base_edit = predict(base, edit, setup.device, progress=progress, desc=f"base model on {edit.split}")
    return SweepContext(setup, sha, setup.key(sha), test, edit, base_edit, cache, versions())


def completed_rows(path: str | Path) -> dict[str, dict]:
    """experiment_id -> row of a sweep CSV (the last row wins)."""
    _, rows = read_csv(path)
    return {row["experiment_id"]: row for row in rows if row.get("experiment_id")}


def check_resumable(path, rows: dict[str, dict], sweep_key: str) -> None:
    keys = {row.get("sweep_key") for row in rows.values()} - {sweep_key}
    if keys:
        raise UsageError(f"{path} holds runs of another sweep setup (checkpoint, dataset, edit split, sizing, "
                         f"holdout fraction or objective differ: key {sorted(keys)[0]}, now {sweep_key}): "
                         f"choose another --output-file")


def plan(specs: list[RunSpec], done: dict[str, dict], retry_failed: bool) -> list[RunSpec]:
    """The runs still to do: ids not in ``done``, plus failed ones when ``retry_failed``."""
    return [s for s in specs if s.experiment_id not in done
            or (retry_failed and not is_true(done[s.experiment_id].get("success")))]


def artifact_dir(experiment_id: str, output_file) -> Path:
    """artifacts/experiments/<experiment_id>/<csv stem>-<hash of the CSV's path>/: the models of one run of one
    sweep CSV (two CSVs may hold the same experiment id)."""
    path = Path(output_file).resolve()
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return path_for("experiment_dir", experiment_id=experiment_id) / safe_name(f"{path.stem}-{tag}")


def default_record_dir(output_file) -> Path:
    """results/experiment.csv -> results/experiment/ (one <experiment_id>.json per run)."""
    path = Path(output_file)
    return path.with_name(path.stem)


def ensure_base_model(path, dataset: str, data_dir="data", download=True, device="cpu", width_scale: int = 1,
                      progress: bool = True) -> dict | None:
    """Train and save the base model at ``path`` if it is missing (training.TrainConfig defaults).

    Returns the sidecar record of a freshly trained model, None when ``path`` already existed.
    """
    from .training import TrainConfig, train_base_model

    path = Path(path)
    if path.exists():
        return None
    train_split = load_split(dataset, "train", data_dir, download=download)
    test_split = load_split(dataset, "test", data_dir, download=download)
    return train_base_model(path, train_split, test_split, TrainConfig(), width_scale, device, progress,
                            trained_by="experiment_runner")


def summary_table(rows: list[dict]) -> str:
    """A fixed-width table of finished runs for the terminal."""
    lines = [f"{'experiment_id':<52} {'status':<13} {'size':>5} {'time s':>8} {'drawdown':>9} {'min margin':>10}"]
    for row in sorted(rows, key=lambda r: r["experiment_id"]):
        def num(key, fmt):
            value = row.get(key)
            return format(value, fmt) if isinstance(value, (int, float)) and np.isfinite(value) else "-"
        lines.append(f"{row['experiment_id']:<52} {row['status']:<13} {num('actual_repair_set_size', 'd'):>5} "
                     f"{num('repair_runtime_seconds', '.2f'):>8} {num('drawdown', '.2f'):>9} "
                     f"{num('saved_min_margin', '.4f'):>10}")
    return "\n".join(lines)
