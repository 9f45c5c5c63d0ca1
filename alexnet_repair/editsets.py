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

import io
import json
import logging
import math
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .data import CLASS_NAMES, Split
from .errors import DataError, UsageError
from .evaluate import Predictions, predict
from .fileio import atomic_write_bytes, write_json
from .paths import manifest_path, path_for

log = logging.getLogger(__name__)

KINDS = ("misclassified", "by-class")
FOCUSES = ("incorrect", "correct", "all")
SIZINGS = ("strict", "flexible")
SWEEP_TYPES = {"misclassified": ("misclassified", None),
               "class_homogeneous_incorrect": ("by-class", "incorrect"),
               "class_homogeneous_correct": ("by-class", "correct")}
FORMAT = "alexnet_repair.editset"
FORMAT_VERSION = 1
TENSOR_KEYS = ("images", "labels", "indices", "holdout_indices", "predictions", "probs")
IMAGE_SHAPE = (3, 64, 64)
CLASS_LIST = ", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES))


@dataclass
class EditSet:
    images: torch.Tensor            # (n, 3, 64, 64) float32 model inputs, in edit order
    labels: torch.Tensor            # (n,) int64 targets (= true labels)
    indices: np.ndarray             # (n,) int64 indices into meta["split"] of meta["dataset"]; -1 = unknown (legacy)
    holdout_indices: np.ndarray     # (h,) int64 same-kind images held out for generalization, disjoint from indices
    meta: dict                      # the JSON manifest
    predictions: torch.Tensor | None = None   # (n,) int64 the base model's predictions at build time
    probs: torch.Tensor | None = None         # (n, 10) float32 its softmax probabilities

    kind = property(lambda self: self.meta.get("kind"))
    focus = property(lambda self: self.meta.get("focus"))
    target_class = property(lambda self: self.meta.get("target_class"))
    dataset = property(lambda self: self.meta.get("dataset"))
    split = property(lambda self: self.meta.get("split"))
    legacy = property(lambda self: bool(self.meta.get("legacy", False)))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def drawdown_indices(self, split_size: int) -> np.ndarray:
        """Every index of the ``split_size``-image split that is neither edited nor held out (sorted)."""
        if self.legacy:
            raise DataError("a legacy edit set has no dataset indices, so its drawdown set is unknown: rebuild it "
                            "with editset_generator.py")
        used = np.concatenate([self.indices, self.holdout_indices])
        if used.size and used.max() >= split_size:
            raise DataError(f"edit set indices go up to {used.max()} but the split has {split_size} images "
                            f"(built from another split or dataset?)")
        return np.setdiff1d(np.arange(split_size, dtype=np.int64), used)


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


def save_editset(editset: EditSet, path=None, *, force: bool = False) -> tuple[Path, Path]:
    """Atomically write the tensors (.pt) and the manifest (.json); never overwrite without ``force``."""
    if editset.legacy:
        raise UsageError("a legacy edit set has no dataset indices and cannot be saved in the current format: "
                         "rebuild it with editset_generator.py")
    pt = Path(path) if path is not None else default_editset_path(editset.kind, editset.target_class,
                                                                  editset.focus, editset.dataset or "cifar10")
    if pt.suffix != ".pt":
        raise UsageError(f"edit set path must end in .pt (got {pt})")
    manifest = manifest_path(pt)
    existing = [p for p in (pt, manifest) if p.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists: pass --force to overwrite it, or choose another --output")
    n = len(editset)
    tensors = {
        "images": editset.images.detach().to(torch.float32).contiguous(),
        "labels": editset.labels.to(torch.int64),
        "indices": torch.as_tensor(editset.indices, dtype=torch.int64),
        "holdout_indices": torch.as_tensor(editset.holdout_indices, dtype=torch.int64),
        "predictions": (editset.predictions if editset.predictions is not None
                        else torch.full((n,), -1)).to(torch.int64),
        "probs": (editset.probs if editset.probs is not None
                  else torch.full((n, len(CLASS_NAMES)), float("nan"))).to(torch.float32),
    }
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    atomic_write_bytes(pt, buffer.getvalue())
    write_json(manifest, editset.meta)
    return pt, manifest


def load_editset(path) -> EditSet:
    """Load and validate an edit set (.pt plus its manifest), or an earlier toolkit's plain (images, labels) file."""
    pt = Path(path)
    if pt.suffix == ".json":
        raise DataError(f"{pt}: pass the edit set's .pt file, not its manifest")
    if not pt.is_file():
        raise DataError(f"edit set not found: {pt} (build one with `uv run python editset_generator.py ...`)")
    try:
        obj = torch.load(pt, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = (str(err).strip().splitlines() or ["unpickling refused"])[0]
        raise DataError(f"{pt}: not a tensor-only edit set (refused by weights_only loading: {first})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise DataError(f"{pt}: cannot read edit set ({(str(err).splitlines() or [type(err).__name__])[0]})") from None
    manifest = manifest_path(pt)
    if manifest.is_file() or (isinstance(obj, dict) and "indices" in obj):
        return _load_current(pt, obj, manifest)
    return _load_legacy(pt, obj)


def _check_images_labels(where: Path, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DataError(f"{where}: images and labels must be tensors")
    if images.dtype == torch.uint8 and images.ndim == 4 and tuple(images.shape[1:]) == (32, 32, 3):
        from .data import preprocess
        images = preprocess(images)  # raw CIFAR images of an earlier toolkit
    if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE or not images.is_floating_point():
        raise DataError(f"{where}: images have shape {tuple(images.shape)} ({images.dtype}), "
                        f"expected (n, 3, 64, 64) float")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise DataError(f"{where}: labels have shape {tuple(labels.shape)} ({labels.dtype}), "
                        f"expected ({images.shape[0]},) integer")
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{where}: labels outside 0..9 (found {int(labels.min())}..{int(labels.max())})")
    if not torch.isfinite(images).all():
        raise DataError(f"{where}: images hold non-finite values (NaN or inf)")
    return images.to(torch.float32), labels.to(torch.int64)


def _load_current(pt: Path, obj, manifest: Path) -> EditSet:
    if not isinstance(obj, dict):
        raise DataError(f"{pt}: holds a {type(obj).__name__}, expected a dict of tensors")
    missing = [k for k in TENSOR_KEYS if k not in obj]
    if missing:
        raise DataError(f"{pt}: missing {', '.join(missing)}")
    if not manifest.is_file():
        raise DataError(f"{pt}: its manifest {manifest} is missing")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{manifest}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{manifest}: not an edit-set manifest")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{manifest}: format version {meta.get('format_version')}, this toolkit reads {FORMAT_VERSION}")
    images, labels = _check_images_labels(pt, obj["images"], obj["labels"])
    n = len(labels)
    shapes = {"indices": (n,), "predictions": (n,), "probs": (n, len(CLASS_NAMES))}
    for key, shape in shapes.items():
        if not isinstance(obj[key], torch.Tensor) or tuple(obj[key].shape) != shape:
            raise DataError(f"{pt}: {key} should be a tensor of shape {shape}")
    if not isinstance(obj["holdout_indices"], torch.Tensor) or obj["holdout_indices"].ndim != 1:
        raise DataError(f"{pt}: holdout_indices should be a 1-d tensor")
    indices = obj["indices"].to(torch.int64).numpy()
    holdout = obj["holdout_indices"].to(torch.int64).numpy()
    if (indices < 0).any() or len(np.unique(indices)) != n:
        raise DataError(f"{pt}: edit indices must be distinct and non-negative")
    overlap = np.intersect1d(indices, holdout)
    if overlap.size:
        raise DataError(f"{pt}: {overlap.size} images are both edited and held out (e.g. index {overlap[0]})")
    agree = {"actual_size": n, "indices": indices.tolist(), "holdout_indices": holdout.tolist(),
             "labels": labels.tolist(), "predictions": obj["predictions"].to(torch.int64).tolist()}
    for key, value in agree.items():
        if meta.get(key) != value:
            raise DataError(f"{manifest}: {key} does not match the tensors in {pt.name} (mismatched files?)")
    return EditSet(images, labels, indices, holdout, meta, obj["predictions"].to(torch.int64),
                   obj["probs"].to(torch.float32))


_LEGACY_NAME = re.compile(r"^(synthetic_)?(?:misclassified|class_(\d)_[a-z]+(?:_(correct|all))?)_edit_dataset\.pt$")


def _load_legacy(pt: Path, obj) -> EditSet:
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        images, labels = obj
    elif isinstance(obj, dict):
        images = next((obj[k] for k in ("images", "data", "inputs") if k in obj), None)
        labels = next((obj[k] for k in ("labels", "targets") if k in obj), None)
        if images is None or labels is None:
            raise DataError(f"{pt}: no images/labels in it (keys: {', '.join(map(str, list(obj)[:6]))})")
    else:
        raise DataError(f"{pt}: holds a {type(obj).__name__}, expected a dict of tensors or (images, labels)")
    images, labels = _check_images_labels(pt, images, labels)
    match = _LEGACY_NAME.match(pt.name)
    kind = focus = target = None
    if match:
        kind = "by-class" if match.group(2) is not None else "misclassified"
        target = None if match.group(2) is None else int(match.group(2))
        focus = None if target is None else (match.group(3) or "incorrect")
    log.warning("%s: an earlier-toolkit edit set without a manifest: dataset indices unknown, no held-out set", pt)
    n = len(labels)
    meta = {"legacy": True, "kind": kind, "focus": focus, "target_class": target,
            "target_class_name": None if target is None else CLASS_NAMES[target],
            "dataset": "synthetic" if match and match.group(1) else None, "split": None,
            "actual_size": n, "holdout_size": 0, "class_histogram": class_histogram(labels), "source_file": str(pt)}
    return EditSet(images, labels, np.full(n, -1, dtype=np.int64), np.zeros(0, dtype=np.int64), meta)


def check_against_split(editset: EditSet, split: Split) -> None:
    """DataError unless ``split`` is the dataset/split the set was built from (names, size, labels at the indices)."""
    if editset.legacy:
        return
    if (editset.dataset, editset.split) != (split.dataset, split.split):
        raise DataError(f"edit set was built from {editset.dataset}/{editset.split}, not {split.dataset}/{split.split}")
    if editset.meta.get("split_size") not in (None, len(split)):
        raise DataError(f"edit set was built from a {editset.meta['split_size']}-image split, this one has {len(split)}")
    if not torch.equal(split.labels[torch.from_numpy(editset.indices)].to(torch.int64), editset.labels):
        raise DataError(f"edit set labels differ from {split.dataset}/{split.split} at its indices (other data?)")


def load_editset_for(mode: str | None, target_class: int | None, focus: str = "incorrect",
                     path: str | None = None, dataset: str | None = None):
    """The edit set named by ``path``, else the generator's default file for ``mode`` / class / focus.

    Without ``dataset`` the CIFAR-10 file is preferred and the ``synthetic_`` one used when only it exists.
    """
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
