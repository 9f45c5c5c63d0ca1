"""The steps the scripts and the sweep runner share: find an edit set, run a repair method, measure it."""

from __future__ import annotations

import logging
from pathlib import Path

from .data import load_split
from .errors import DataError
from .evaluate import Predictions, compare_models, predict
from .repair import RepairConfig, RepairResult, repair

log = logging.getLogger(__name__)


def load_editset_for(mode: str | None, target_class: int | None, focus: str = "incorrect",
                     path: str | None = None, dataset: str | None = None):
    """The edit set named by ``path``, else the generator's default file for ``mode`` / class / focus.

    Without ``dataset`` the CIFAR-10 file is preferred and the ``synthetic_`` one used when only it exists.
    """
    from .editsets import default_editset_path, load_editset

    if path is not None:
        return load_editset(path), Path(path)
    kind = "misclassified" if mode == "misclassified" else "by-class"
    datasets = [dataset] if dataset else ["cifar10", "synthetic"]
    candidates = [default_editset_path(kind, target_class, focus, ds) for ds in datasets]
    for candidate in candidates:
        if candidate.exists():
            return load_editset(candidate), candidate
    hint = f"editset_generator.py {mode}" + (f" --target-class {target_class}" if kind == "by-class" else "")
    raise DataError(f"no edit set at {' or '.join(map(str, candidates))}: run `uv run python {hint}` first, "
                    f"or give --edit-set PATH")


def ft_config_from(args=None):
    """The fine-tuning settings of ``args`` (``--ft-*`` flags and ``--seed``); defaults where absent."""
    from .repair.finetune import FTConfig

    d = FTConfig()
    return FTConfig(max_steps=getattr(args, "ft_max_steps", d.max_steps), lr=getattr(args, "ft_lr", d.lr),
                    optimizer=getattr(args, "ft_optimizer", d.optimizer), replay=getattr(args, "ft_replay", d.replay),
                    seed=getattr(args, "seed", d.seed))


def run_repair_method(model, editset, config: RepairConfig, args=None, device="cpu") -> RepairResult:
    """Repair ``model`` on ``editset`` with the configured method: APRNN (the LP, default) or fine-tuning.

    Fine-tuning's ``--ft-replay`` images come from the train split of the edit set's dataset.
    """
    if config.method != "ft":
        return repair(model, editset.images, editset.labels, config, device)
    from .repair.finetune import finetune

    ft = ft_config_from(args)
    replay = None
    if ft.replay:
        dataset = getattr(args, "dataset", None) or (editset.dataset or "cifar10").removesuffix("-folder")
        replay = load_split(dataset, "train", getattr(args, "data_dir", "data"),
                            download=not getattr(args, "no_download", False))
    return finetune(model, editset.images, editset.labels, config, ft, replay, device)


def evaluate_repair(base, repaired, editset, dataset: str, args, device="cpu",
                    base_preds: Predictions | None = None) -> dict:
    """Drawdown, generalization and per-class change of a repair on the test split (and the edit set's split)."""
    quiet = bool(getattr(args, "quiet", False))
    download = not getattr(args, "no_download", False)
    try:
        test = load_split(dataset, "test", getattr(args, "data_dir", "data"), download=download)
    except DataError as err:
        log.warning("skipping drawdown evaluation: %s", err)
        return {}
    same = editset.meta.get("split", "test") == "test"
    base_preds = base_preds or predict(base, test, device, progress=not quiet, desc="base model")
    new_preds = predict(repaired, test, device, progress=not quiet, desc="repaired model")
    holdout = None
    if not same and len(editset.holdout_indices):
        other = load_split(dataset, editset.meta["split"], getattr(args, "data_dir", "data"), download=download)
        holdout = tuple(predict(m, other, device, index=editset.holdout_indices, progress=not quiet)
                        for m in (base, repaired))
    return compare_models(base_preds, new_preds, editset.indices if same else (), editset.holdout_indices, holdout)
