"""Edit set files: ``<prefix>_edit_dataset.pt`` (a dict of tensors, loadable with
``torch.load(weights_only=True)``) and ``<prefix>_edit_metadata.json`` (the manifest, :attr:`EditSet.meta`).
The earlier toolkit's plain files (images + labels, no manifest) still load, marked ``meta["legacy"] = True``.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from alexnet_repair.data import CLASS_NAMES, Split, preprocess
from alexnet_repair.editsets.build import class_histogram, default_editset_path
from alexnet_repair.editsets.editset import FORMAT, FORMAT_VERSION, IMAGE_SHAPE, TENSOR_KEYS, EditSet
from alexnet_repair.errors import DataError, UsageError
from alexnet_repair.fileio import atomic_write_files, json_text, load_tensor_file, one_line
from alexnet_repair.model import all_finite
from alexnet_repair.paths import manifest_path

log = logging.getLogger(__name__)


def save_editset(editset: EditSet, path=None, *, force: bool = False) -> tuple[Path, Path]:
    """Write the tensors (.pt) and the manifest (.json) together (both or neither replaced: see
    :func:`fileio.atomic_write_files`); never overwrite without ``force``."""
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
    atomic_write_files({pt: buffer.getvalue(), manifest: json_text(editset.meta).encode("utf-8")})
    return pt, manifest


def load_editset(path) -> EditSet:
    """Load and validate an edit set (.pt plus its manifest), or an earlier toolkit's plain (images, labels) file."""
    pt = Path(path)
    if pt.suffix == ".json":
        raise DataError(f"{pt}: pass the edit set's .pt file, not its manifest")
    if not pt.exists():
        raise DataError(f"edit set not found: {pt} (build one with `uv run python editset_generator.py ...`)")
    obj = load_tensor_file(pt, "edit set", DataError)
    manifest = manifest_path(pt)
    if manifest.exists() or (isinstance(obj, dict) and "indices" in obj):
        return _load_current(pt, obj, manifest)
    return _load_legacy(pt, obj)


def _check_images_labels(where: Path, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DataError(f"{where}: images and labels must be tensors")
    if images.dtype == torch.uint8 and images.ndim == 4 and tuple(images.shape[1:]) == (32, 32, 3):
        images = preprocess(images)  # raw CIFAR images of an earlier toolkit
    if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE or not images.is_floating_point():
        raise DataError(f"{where}: images have shape {tuple(images.shape)} ({images.dtype}), "
                        f"expected (n, 3, 64, 64) float")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise DataError(f"{where}: labels have shape {tuple(labels.shape)} ({labels.dtype}), "
                        f"expected ({images.shape[0]},) integer")
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{where}: labels outside 0..9 (found {int(labels.min())}..{int(labels.max())})")
    if not all_finite(images):
        raise DataError(f"{where}: images hold non-finite values (NaN or inf)")
    return images.to(torch.float32), labels.to(torch.int64)


def _load_current(pt: Path, obj, manifest: Path) -> EditSet:
    if not isinstance(obj, dict):
        raise DataError(f"{pt}: holds a {type(obj).__name__}, expected a dict of tensors")
    missing = [k for k in TENSOR_KEYS if k not in obj]
    if missing:
        raise DataError(f"{pt}: missing {', '.join(missing)}")
    if manifest.is_dir():
        raise DataError(f"{pt}: its manifest {manifest} is a folder, not a file")
    if not manifest.is_file():
        raise DataError(f"{pt}: its manifest {manifest} is missing")
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{manifest}: not valid JSON ({one_line(err)})") from None
    except OSError as err:
        raise DataError(f"{manifest}: cannot read the manifest ({err.strerror or one_line(err)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{manifest}: not an edit-set manifest")
    odd = [key for key in ("kind", "dataset", "split", "focus") if not isinstance(meta.get(key), (str, type(None)))]
    if odd:
        raise DataError(f"{manifest}: {odd[0]} should be a string, not {type(meta[odd[0]]).__name__}")
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
