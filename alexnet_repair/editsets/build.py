"""Edit sets: the images a repair must fix, their provenance, and a held-out generalization split.

Kinds (targets are always the true labels):
- ``misclassified``: images of the split the base model gets wrong;
- ``by-class``: images of one class, focus ``incorrect`` (the ones it gets wrong), ``correct`` or ``all``.

Sizing and the held-out rule. The C candidates are shuffled once with ``seed``; the edit set is a prefix of that
order, the held-out set a suffix, so for one seed smaller sets are nested in larger ones. With requested size N
(None = no cap) and holdout fraction f, let H = floor(f * C):
- flexible: edit = min(N, C - H) images, held out = H (an edit set smaller than N is reported, never an error);
- strict:   fewer than N candidates is a DataError; otherwise edit = N exactly and held out = min(H, C - N)
            (the held-out set shrinks, never the edit set).
f = 0 means no held-out set. The drawdown set is the rest of the split: all indices minus edit minus held out.

Files: ``<prefix>_edit_dataset.pt`` (a dict of tensors, loadable with ``torch.load(weights_only=True)``) and
``<prefix>_edit_metadata.json`` (the manifest, :attr:`EditSet.meta`). The earlier toolkit's plain files
(images + labels, no manifest) still load, marked ``meta["legacy"] = True``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path

import numpy as np
import torch

from alexnet_repair import __version__
from alexnet_repair.data import CLASS_NAMES, Split
from alexnet_repair.editsets.editset import (CLASS_LIST, FOCUSES, FORMAT, FORMAT_VERSION, KINDS, SIZINGS,
                                             SWEEP_TYPES, EditSet)
from alexnet_repair.errors import DataError, UsageError
from alexnet_repair.evaluate import Predictions, predict
from alexnet_repair.paths import path_for

log = logging.getLogger(__name__)


def parse_class(value) -> int:
    """A class index 0..9 or a class name ('cat') -> int; anything else is a UsageError naming the 10 classes."""
    text = str(value).strip().lower()
    if text in CLASS_NAMES:
        return CLASS_NAMES.index(text)
    if re.fullmatch(r"[0-9]+", text) and int(text) < len(CLASS_NAMES):
        return int(text)
    raise UsageError(f"invalid target class {value!r}: choose 0-9 ({CLASS_LIST})")


def parse_sweep_type(name: str) -> tuple[str, str | None]:
    if name not in SWEEP_TYPES:
        raise UsageError(f"unknown repair-set type {name!r}: choose one of {', '.join(SWEEP_TYPES)}")
    return SWEEP_TYPES[name]


def default_editset_path(kind: str, target_class: int | None = None, focus: str | None = "incorrect",
                         dataset: str = "cifar10") -> Path:
    return path_for("editset", kind=kind, target_class=target_class, focus=focus, dataset=dataset)


def split_sizes(candidates: int, max_size: int | None, sizing: str, holdout_fraction: float) -> tuple[int, int]:
    """(edit size, held-out size) for ``candidates`` images under the module's documented rule."""
    hold = math.floor(holdout_fraction * candidates + 1e-9)
    if max_size is None:
        return candidates - hold, hold
    if sizing == "strict":
        if candidates < max_size:
            raise DataError(f"{max_size} requested but only {candidates} candidates exist")
        return max_size, min(hold, candidates - max_size)
    return min(max_size, candidates - hold), hold


def describe_kind(kind: str, target_class: int | None, focus: str | None) -> str:
    """'misclassified images', 'images of class 3 cat the model misclassifies', ..."""
    if kind == "misclassified":
        return "misclassified images"
    name = f"images of class {target_class} {CLASS_NAMES[target_class]}"
    return {"incorrect": f"{name} the model misclassifies", "correct": f"{name} the model gets right"}.get(focus, name)


def _check_args(kind, target_class, focus, max_size, sizing, holdout_fraction):
    if kind not in KINDS:
        raise UsageError(f"unknown edit-set kind {kind!r}: choose one of {', '.join(KINDS)}")
    if kind == "misclassified":
        if target_class is not None:
            raise UsageError("a target class is only for by-class edit sets")
        target_class, focus = None, None
    else:
        if target_class is None:
            raise UsageError(f"by-class edit sets need a target class 0-9 ({CLASS_LIST})")
        target_class = parse_class(target_class)
        if focus not in FOCUSES:
            raise UsageError(f"unknown focus {focus!r}: choose one of {', '.join(FOCUSES)}")
    if sizing not in SIZINGS:
        raise UsageError(f"unknown sizing {sizing!r}: choose one of {', '.join(SIZINGS)}")
    if max_size is not None and int(max_size) < 1:
        raise UsageError(f"max size must be at least 1 (got {max_size})")
    if not 0 <= holdout_fraction < 1:
        raise UsageError(f"holdout fraction must be in [0, 1) (got {holdout_fraction})")
    return target_class, focus


def candidate_indices(preds: Predictions, kind: str, target_class: int | None, focus: str | None) -> np.ndarray:
    """Dataset indices (ascending) of every image of the requested kind, from one pass of predictions."""
    wrong = preds.preds != preds.labels
    if kind == "misclassified":
        mask = wrong
    else:
        mask = preds.labels == target_class
        if focus == "incorrect":
            mask = mask & wrong
        elif focus == "correct":
            mask = mask & ~wrong
    return preds.indices[mask].astype(np.int64)


def build_editset(model, split: Split, kind: str, *, target_class=None, focus="incorrect", max_size=None,
                  sizing="flexible", holdout_fraction=0.5, seed=0, device="cpu", checkpoint_sha256=None,
                  checkpoint_path=None, predictions: Predictions | None = None, progress=True) -> EditSet:
    """Select, draw and package an edit set; ``predictions`` (the model over the whole split) skips the pass."""
    target_class, focus = _check_args(kind, target_class, focus, max_size, sizing, holdout_fraction)
    if predictions is None:
        predictions = predict(model, split, device, progress=progress, desc=f"predict {split.split}")
    elif not np.array_equal(predictions.indices, np.arange(len(split))):
        raise UsageError("precomputed predictions must cover the whole split in dataset order")
    candidates = candidate_indices(predictions, kind, target_class, focus)
    count, what = len(candidates), describe_kind(kind, target_class, focus)
    where = f"{split.dataset}/{split.split}"
    if sizing == "strict" and max_size is not None and count < max_size:
        raise DataError(f"strict sizing: {max_size} edit images requested but only {count} {what} exist in {where} "
                        f"(use --sizing flexible to take what exists)")
    n_edit, n_hold = split_sizes(count, max_size, sizing, holdout_fraction)
    if n_edit == 0:
        raise DataError(f"no edit images: {count} {what} in {where}, {n_hold} of them held out")
    order = candidates[np.random.default_rng(seed).permutation(count)]
    edit, holdout = order[:n_edit], np.sort(order[count - n_hold:]) if n_hold else np.zeros(0, np.int64)
    labels = split.labels[torch.from_numpy(edit)].to(torch.int64)
    preds = torch.from_numpy(predictions.preds[edit].astype(np.int64))
    probs = torch.from_numpy(predictions.probs[edit].astype(np.float32))
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "kind": kind, "focus": focus, "target_class": target_class,
        "target_class_name": None if target_class is None else CLASS_NAMES[target_class],
        "dataset": split.dataset, "split": split.split, "data_source": split.source, "split_size": len(split),
        "seed": int(seed), "sizing": sizing, "requested_size": None if max_size is None else int(max_size),
        "actual_size": int(n_edit), "candidates": int(count), "holdout_fraction": float(holdout_fraction),
        "holdout_size": int(n_hold), "drawdown_size": int(len(split) - n_edit - n_hold),
        "base_accuracy": predictions.accuracy(),
        "class_histogram": class_histogram(labels),
        "indices": edit.tolist(), "holdout_indices": holdout.tolist(),
        "labels": labels.tolist(), "predictions": preds.tolist(), "probabilities": probs.tolist(),
        "checkpoint": None if checkpoint_path is None else str(checkpoint_path),
        "checkpoint_sha256": checkpoint_sha256,
        "toolkit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    log.info("edit set: %d of %d %s in %s, %d held out", n_edit, count, what, where, n_hold)
    return EditSet(split.inputs(edit), labels, edit.astype(np.int64), holdout.astype(np.int64), meta, preds, probs)


def class_histogram(labels) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    return {name: int(counts[c]) for c, name in enumerate(CLASS_NAMES)}

