"""Every default file and folder the toolkit reads or writes, built in one place.

All paths are relative to the current working directory (the repository root when following the README),
so ``data/``, ``artifacts/`` and ``results/`` land beside the scripts.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from .data import CLASS_NAMES

DATA_DIR = Path("data")
ARTIFACTS_DIR = Path("artifacts")
RESULTS_DIR = Path("results")
# folders beside a sweep CSV (results/experiment.csv): its run records, its claims, a submission of it
BESIDE_CSV = {"run_records": "{stem}", "claims": "{name}.claims", "submission": "{stem}.submit"}


def editset_prefix(kind: str, target_class: int | None = None, focus: str | None = None,
                   dataset: str = "cifar10") -> str:
    """The earlier toolkit's names: ``misclassified``, ``class_3_cat``; ``class_3_cat_correct`` for other focuses.

    Sets built from the synthetic dataset get a ``synthetic_`` prefix so they never pass for CIFAR-10 ones.
    """
    if kind == "misclassified":
        prefix = "misclassified"
    else:
        prefix = f"class_{target_class}_{CLASS_NAMES[target_class]}"
        if focus and focus != "incorrect":
            prefix += f"_{focus}"
    return f"synthetic_{prefix}" if dataset == "synthetic" else prefix


def path_for(what: str, *, root: str | Path = ".", **keys) -> Path:
    """The default path of ``what``:

    - ``dataset_root``                         data/
    - ``editset`` (kind, target_class, focus, dataset)  data/edit_sets/<prefix>_edit_dataset.pt
    - ``editset_manifest`` (same keys)          data/edit_sets/<prefix>_edit_metadata.json
    - ``base_model``                            artifacts/alexnet_base.pth
    - ``repaired_model``                        artifacts/alexnet_repaired.pth
    - ``experiment_dir`` (experiment_id)         artifacts/experiments/<experiment_id>/
    - ``run_record`` (tool, name)               results/<tool>_<name>_<timestamp>.json
    - ``sweep_csv``                             results/experiment.csv
    - ``stochastic_csv``                        results/stochastic_experiment.csv
    - ``analysis_dir``                          results/analysis/
    - ``stochastic_analysis_dir``               results/analysis/stochastic/
    - ``run_models`` (experiment_id, sweep_csv)  artifacts/experiments/<experiment_id>/<csv stem>-<hash of the CSV's
      absolute path>/: the models of one run of one sweep CSV (two CSVs may hold the same experiment id)
    - ``chain_model`` (chain_id, iteration, sweep_csv)  <run_models of the chain>/iter_<iteration:04d>.pth
    - ``run_records`` (sweep_csv)               beside the CSV: results/experiment.csv -> results/experiment/
    - ``claims`` (sweep_csv)                    results/experiment.csv.claims/: a lock per run or chain in progress
    - ``submission`` (sweep_csv)                results/experiment.submit/: submission.json, shard CSVs, logs/
    """
    root = Path(root)
    if what == "dataset_root":
        return root / DATA_DIR
    if what in ("editset", "editset_manifest"):
        prefix = editset_prefix(keys["kind"], keys.get("target_class"), keys.get("focus"),
                                keys.get("dataset", "cifar10"))
        suffix = "_edit_dataset.pt" if what == "editset" else "_edit_metadata.json"
        return root / DATA_DIR / "edit_sets" / f"{prefix}{suffix}"
    if what == "base_model":
        return root / ARTIFACTS_DIR / "alexnet_base.pth"
    if what == "repaired_model":
        return root / ARTIFACTS_DIR / "alexnet_repaired.pth"
    if what == "experiment_dir":
        return root / ARTIFACTS_DIR / "experiments" / safe_name(keys["experiment_id"])
    if what == "run_record":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return root / RESULTS_DIR / f"{keys['tool']}_{safe_name(keys.get('name', 'run'))}_{stamp}.json"
    if what == "sweep_csv":
        return root / RESULTS_DIR / "experiment.csv"
    if what == "stochastic_csv":
        return root / RESULTS_DIR / "stochastic_experiment.csv"
    if what == "analysis_dir":
        return root / RESULTS_DIR / "analysis"
    if what == "stochastic_analysis_dir":
        return root / RESULTS_DIR / "analysis" / "stochastic"
    if what == "run_models":
        csv = Path(keys["sweep_csv"]).resolve()
        tag = hashlib.sha256(str(csv).encode()).hexdigest()[:8]
        return path_for("experiment_dir", root=root, experiment_id=keys["experiment_id"]) / safe_name(
            f"{csv.stem}-{tag}")
    if what == "chain_model":
        return path_for("run_models", root=root, experiment_id=keys["chain_id"],
                        sweep_csv=keys["sweep_csv"]) / f"iter_{keys['iteration']:04d}.pth"
    if what in BESIDE_CSV:
        csv = Path(keys["sweep_csv"])
        return csv.with_name(BESIDE_CSV[what].format(stem=csv.stem, name=csv.name))
    raise KeyError(f"unknown path kind {what!r}")


def manifest_path(editset_path: str | Path) -> Path:
    """``x_edit_dataset.pt`` -> ``x_edit_metadata.json``; any other ``name.pt`` -> ``name.json``."""
    path = Path(editset_path)
    if path.name.endswith("_edit_dataset.pt"):
        return path.with_name(path.name[: -len("_edit_dataset.pt")] + "_edit_metadata.json")
    return path.with_suffix(".json")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "run"
