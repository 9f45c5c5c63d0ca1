"""Sweep-wide settings (not grid dimensions) and what a sweep computes once, shared by grid runs and chains.

Settings that are not grid dimensions (checkpoint, dataset, edit split, sizing, rows, ...) form the
``sweep_key``: a CSV never mixes two of them. The sweep-wide work is done once: one base-model pass over the
test split (kept as a :class:`alexnet_repair.evaluate.FeatureCache`) and one over the edit split; edit sets are drawn from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..data import DataSource, Split, load_split
from ..evaluate import Predictions, predict
from ..model import file_sha256, layer_position, load_checkpoint, resolve_layer
from ..paths import path_for
from ..provenance import versions
from ..repair import RepairConfig
from ..training import TrainConfig, train_base_model
from ..evaluate import FeatureCache
from .settings import DEFAULT_EDIT_SPLIT, DEFAULT_HOLDOUT_FRACTION, DEFAULT_OBJECTIVE, DEFAULT_SIZING

log = logging.getLogger(__name__)


@dataclass
class SweepSetup:
    """Sweep-wide settings (not grid dimensions). Those in :meth:`key` must match to resume into a CSV."""

    weights: str
    dataset: str = "cifar10"
    data_dir: str = str(path_for("dataset_root"))
    download: bool = True
    edit_split: str = DEFAULT_EDIT_SPLIT
    sizing: str = DEFAULT_SIZING
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    rows: str | None = None
    formulation: str = "auto"
    algorithm: str = "auto"
    time_limit: float | None = None
    on_infeasible: str = "fail"          # "max-fixed": an infeasible LP becomes a MILP fixing the most images
    threads: int | None = None           # torch + solver threads per run (None: cores // jobs)
    keep_models: bool = False
    device: str = "cpu"
    record_dir: str | None = None        # where each run's JSON record goes (None: no records)
    output_file: str = str(path_for("sweep_csv"))   # the sweep CSV (names the folder of kept models)

    def key(self, weights_sha256: str) -> str:
        # The objective is a grid dimension now (ids _o<name>): the key holds APRNN's, which every earlier sweep
        # without --objective had, so those CSVs resume; one of an earlier sweep-wide --objective l1 (ids without
        # the suffix) is refused, not mixed up with the new ids.
        fields = {"weights_sha256": weights_sha256, "dataset": self.dataset, "edit_split": self.edit_split,
                  "sizing": self.sizing, "holdout_fraction": self.holdout_fraction, "objective": DEFAULT_OBJECTIVE,
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
                        objective=spec.objective, solver=spec.solver, algorithm=setup.algorithm,
                        formulation=setup.formulation, time_limit=setup.time_limit, threads=setup.threads or threads,
                        method=spec.method, on_infeasible=setup.on_infeasible, preserve=spec.preserve,
                        preserve_margin=spec.preserve_margin, preserve_split=spec.preserve_split)


def data_source(setup: SweepSetup) -> DataSource:
    """Where a sweep's runs read the preserve sets and fine-tuning's replay images from."""
    return DataSource(setup.dataset, setup.data_dir, setup.download)


def prepare_context(setup: SweepSetup, layers, progress: bool = True, weights_sha256: str | None = None
                    ) -> SweepContext:
    """Load the model and splits and do the sweep's base-model passes (test split and edit split)."""
    base = load_checkpoint(setup.weights)
    sha = weights_sha256 or file_sha256(setup.weights)
    test = load_split(setup.dataset, "test", setup.data_dir, download=setup.download)
    stops = {layer_position(resolve_layer(layer)) for layer in layers}
    cache = FeatureCache.build(base, test, stops, device=setup.device)
    if setup.edit_split == "test":
        edit, base_edit = test, cache.base_predictions()
    else:
        edit = load_split(setup.dataset, setup.edit_split, setup.data_dir, download=setup.download)
        base_edit = predict(base, edit, setup.device, progress=progress, desc=f"base model on {edit.split}")
    return SweepContext(setup, sha, setup.key(sha), test, edit, base_edit, cache, versions())


def ensure_base_model(path, dataset: str, data_dir=str(path_for("dataset_root")), download=True, device="cpu",
                      width_scale: int = 1, progress: bool = True) -> dict | None:
    """Train and save the base model at ``path`` if it is missing (training.TrainConfig defaults).

    Returns the sidecar record of a freshly trained model, None when ``path`` already existed.
    """
    path = Path(path)
    if path.exists():
        return None
    train_split = load_split(dataset, "train", data_dir, download=download)
    test_split = load_split(dataset, "test", data_dir, download=download)
    return train_base_model(path, train_split, test_split, TrainConfig(), width_scale, device, progress,
                            trained_by="experiment_runner")


def prepare_data(setup: SweepSetup) -> None:
    """Download (when allowed) and read both splits once, so that jobs started afterwards never race to fetch them."""
    if setup.dataset == "synthetic":        # generated, nothing to fetch
        return
    for split in ("test", "train"):
        load_split(setup.dataset, split, setup.data_dir, download=setup.download)
