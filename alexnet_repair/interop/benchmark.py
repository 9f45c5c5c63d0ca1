"""A VNN-COMP benchmark folder for a model and an edit set: onnx/, vnnlib/, instances.csv, README.md.

One property per edit image (see :mod:`.vnnlib`); ``instances.csv`` lists ``onnx,vnnlib,timeout`` rows with
paths relative to the folder and no header, as in VNN-COMP. The folder is built beside its destination and moved
into place at the end, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..data import CLASS_NAMES
from ..editsets import EditSet
from ..errors import CheckpointError, DataError, UsageError
from ..evaluate import margins_of
from ..fileio import atomic_write_bytes, atomic_write_text, write_json
from ..model import AlexNet, file_sha256, load_checkpoint
from . import onnx_export as ox
from .readme_text import benchmark_readme
from .vnnlib import ENCODINGS, property_text

FORMAT = "alexnet_repair.vnncomp-benchmark"
ONNX_NAME = "onnx/model.onnx"


def check_options(margin: float, epsilon: float, timeout: float, encoding: str) -> None:
    if not math.isfinite(margin):
        raise UsageError(f"--margin must be a finite number (got {margin})")
    if not math.isfinite(epsilon) or epsilon < 0:
        raise UsageError(f"--epsilon must be a finite number >= 0 (got {epsilon})")
    if not math.isfinite(timeout) or timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds (got {timeout})")
    if encoding not in ENCODINGS:
        raise UsageError(f"--encoding must be one of {', '.join(ENCODINGS)} (got {encoding!r})")


def check_editset_fits(editset: EditSet, model: AlexNet, checkpoint: Path, checkpoint_sha: str) -> torch.Tensor:
    """The model's logits on the edit images; DataError when the set does not belong to this kind of model."""
    images = editset.images
    if len(editset) == 0:
        raise DataError("the edit set is empty")
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise DataError(f"edit images hold values in [{float(images.min()):.3g}, {float(images.max()):.3g}], not "
                        f"[0, 1]: not the toolkit's preprocessing (normalised images of another toolkit?)")
    built_with, built_sha = editset.meta.get("checkpoint"), editset.meta.get("checkpoint_sha256")
    if built_with and Path(built_with).is_file() and built_sha != checkpoint_sha:
        try:
            origin = load_checkpoint(built_with)
        except CheckpointError:
            origin = None
        if origin is not None and origin.arch() != model.arch():
            raise DataError(f"the edit set was built with {built_with} (channels {origin.arch()['channels']}, hidden "
                            f"{origin.hidden}) but {checkpoint} has channels {model.arch()['channels']}, hidden "
                            f"{model.hidden}: an edit set of another model width")
    try:
        logits = ox.torch_logits(model, images)
    except RuntimeError as err:
        raise DataError(f"the edit set's images cannot be run through {checkpoint}: "
                        f"{(str(err).splitlines() or ['?'])[0]}") from None
    if logits.shape != (len(editset), len(CLASS_NAMES)):
        raise DataError(f"{checkpoint} gives logits of shape {tuple(logits.shape)} on the edit set")
    return logits


def prepare_destination(out: Path, force: bool) -> None:
    if out.is_file():
        raise UsageError(f"--output {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"{out} exists: pass --force to replace it, or choose another --output")
        try:
            ours = json.loads((out / "benchmark.json").read_text(encoding="utf-8")).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise UsageError(f"{out} is not a benchmark folder written by convert_model.py: refusing to replace it "
                             f"even with --force; choose another --output")


def property_name(position: int, editset: EditSet) -> str:
    index = int(editset.indices[position])
    label = int(editset.labels[position])
    where = f"_idx{index}" if index >= 0 else ""
    return f"vnnlib/edit_{position:04d}{where}_{CLASS_NAMES[label]}.vnnlib"


def build_benchmark(model: AlexNet, editset: EditSet, out: str | Path, *, checkpoint: Path, editset_path: Path,
                    margin: float = 0.0, epsilon: float = 0.0, timeout: float = 300.0, encoding: str = "simple",
                    opset: int = ox.DEFAULT_OPSET, tolerance: float = ox.DEFAULT_TOLERANCE,
                    force: bool = False) -> dict:
    """Write the benchmark folder ``out``; returns its benchmark.json record."""
    check_options(margin, epsilon, timeout, encoding)
    out = Path(out)
    prepare_destination(out, force)
    source_sha = file_sha256(checkpoint)
    logits = check_editset_fits(editset, model, checkpoint, source_sha)
    shift = margin if encoding == "simple" and margin != 0 else None
    data = ox.export_bytes(model, opset, batch=1, margin_shift=shift,
                           metadata={"source_sha256": source_sha, "margin_shift": shift})
    session = ox.ort_session(data)
    check = ox.compare_with_torch(model, session, editset.images, tolerance, shift, what="edit images")
    labels = editset.labels
    centre_margins = margins_of(logits.double(), labels).tolist()
    onnx_logits = ox.ort_run(session, editset.images.numpy())[:, :len(CLASS_NAMES)].astype(np.float64)
    onnx_margins = margins_of(torch.from_numpy(onnx_logits), labels).tolist()
    rows, instances = [], []
    for i in range(len(editset)):
        name, label = property_name(i, editset), int(labels[i])
        comments = [f"alexnet_repair edit image {i} (dataset index {int(editset.indices[i])}), label {label} "
                    f"{CLASS_NAMES[label]}, margin {margin:g}, epsilon {epsilon:g}, encoding {encoding}",
                    f"model {checkpoint.name} sha256 {source_sha}; edit set {editset_path.name}"]
        text = property_text(editset.images[i].numpy(), label, margin=margin, epsilon=epsilon, encoding=encoding,
                             num_classes=len(CLASS_NAMES), comments=comments)
        rows.append((name, text))
        instances.append({"vnnlib": name, "position": i, "dataset_index": int(editset.indices[i]), "label": label,
                          "class": CLASS_NAMES[label], "margin_at_image": centre_margins[i],
                          "onnx_margin_at_image": onnx_margins[i],
                          "violated_at_image": not centre_margins[i] > margin,
                          "onnx_violated_at_image": not onnx_margins[i] > margin})
    record = {
        "format": FORMAT, "format_version": 1, "onnx": ONNX_NAME, "onnx_sha256": _sha256_bytes(data),
        "checkpoint": str(checkpoint), "checkpoint_sha256": source_sha, "arch": model.arch(),
        "edit_set": str(editset_path), "edit_set_dataset": editset.dataset, "edit_set_kind": editset.kind,
        "margin": margin, "epsilon": epsilon, "encoding": encoding, "timeout": timeout, "opset": opset,
        "outputs": 2 * len(CLASS_NAMES) if shift is not None else len(CLASS_NAMES),
        "onnx_check": check, "instances": instances,
        "onnx_sidecar": ox.sidecar(onnx_name=ONNX_NAME, onnx_sha256=_sha256_bytes(data), source=checkpoint,
                                   source_sha256=source_sha, model=model, opset=opset, batch=1, check=check,
                                   margin_shift=shift),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_folder(out, data, rows, record)
    return record


def _sha256_bytes(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def _write_folder(out: Path, data: bytes, rows: list, record: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        atomic_write_bytes(tmp / ONNX_NAME, data)
        for name, text in rows:
            atomic_write_text(tmp / name, text)
        timeout = f"{record['timeout']:g}"
        atomic_write_text(tmp / "instances.csv", "".join(f"{ONNX_NAME},{name},{timeout}\n" for name, _ in rows))
        atomic_write_text(tmp / "README.md", benchmark_readme(record, [name for name, _ in rows]))
        write_json(tmp / "benchmark.json", record)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.replace(old / "previous")
        tmp.replace(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def summary(record: dict) -> list[str]:
    violated = [i for i in record["instances"] if i["violated_at_image"]]
    at_image = np.array([i["margin_at_image"] for i in record["instances"]])
    lines = [f"instances        {len(record['instances'])} (margin {record['margin']:g}, epsilon "
             f"{record['epsilon']:g}, {record['encoding']} encoding, timeout {record['timeout']:g} s)",
             f"onnx check       {record['onnx_check']['images']} edit images, max |logit diff| "
             f"{record['onnx_check']['max_abs_logit_diff']:.3g} (tolerance {record['onnx_check']['tolerance']:g})",
             f"margin at image  min {at_image.min():.4f} over the edit images"]
    if violated:
        lines.append(f"note             {len(violated)} of {len(record['instances'])} properties are violated at the "
                     f"edit image itself (sat: the model misclassifies it or misses the margin)")
    rounding = [i for i in record["instances"] if i["onnx_violated_at_image"] and not i["violated_at_image"]]
    if rounding:
        lines.append(f"warning          {len(rounding)} edit images meet the margin in torch but not in onnxruntime "
                     f"(margins {min(i['onnx_margin_at_image'] for i in rounding):.6f}...): float32 rounding eats the "
                     f"margin's slack; verify a slightly smaller --margin")
    return lines
