"""The subcommands of ``convert_model.py``: onnx, state-dict, vnnlib. Each returns its report lines; the script
prints them.

``onnx`` checks the export on test images of the dataset the checkpoint was made with, unless ``--dataset`` names
one (:func:`choose_dataset`): the training sidecar beside the checkpoint (``train.py`` writes ``NAME.json`` beside
``NAME.pth``), else the newest ``run_repair.py`` record in results/ whose ``output`` is the checkpoint (nothing is
written beside a repaired checkpoint; its run record names the repair's dataset), else cifar10.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..data import DATASETS, dataset_family, load_split
from ..editsets import load_editset
from ..errors import UsageError
from ..fileio import atomic_write_bytes, write_json
from ..model import file_sha256, load_checkpoint
from ..paths import ARTIFACTS_DIR, RESULTS_DIR, safe_name
from . import onnx_export as ox
from .benchmark import build_benchmark, summary
from .statedict import convert_checkpoint

log = logging.getLogger(__name__)

REPAIR_RECORDS = "repair_*.json"  # run_repair.py's run records (paths.path_for("run_record", tool="repair"))


@dataclass(frozen=True)
class DatasetChoice:
    name: str    # one of data.DATASETS
    origin: str  # where the choice came from, for the report and the ONNX sidecar


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _dataset_in(record: dict | None, where: Path) -> str | None:
    value = (record or {}).get("dataset")
    if not isinstance(value, str):
        return None
    name = dataset_family(value)
    if name not in DATASETS:
        log.warning("%s names dataset %r, not one of %s: ignored", where, value, ", ".join(DATASETS))
        return None
    return name


def _same_file(recorded, checkpoint: Path) -> bool:
    try:
        return isinstance(recorded, str) and bool(recorded) and Path(recorded).resolve() == checkpoint.resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def choose_dataset(explicit: str | None, checkpoint: Path, arch: dict,
                   results_dir: Path = RESULTS_DIR) -> DatasetChoice:
    """The dataset to check ``checkpoint``'s export on: ``explicit`` (--dataset), else the one its records name."""
    if explicit:
        return DatasetChoice(explicit, "given with --dataset")
    sidecar = checkpoint.with_suffix(".json")
    record = _read_record(sidecar) if sidecar != checkpoint else None
    if record is not None and record.get("arch") not in (None, arch):
        log.warning("%s describes another model (arch %s, the checkpoint's %s): ignored", sidecar,
                    record.get("arch"), arch)
        record = None
    name = _dataset_in(record, sidecar)
    if name:
        return DatasetChoice(name, f"named by the checkpoint's sidecar {sidecar}")
    records = sorted(Path(results_dir).glob(REPAIR_RECORDS), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in records:
        record = _read_record(path)
        if record is not None and _same_file(record.get("output"), checkpoint):
            name = _dataset_in(record, path)
            if name:
                return DatasetChoice(name, f"named by the repair record {path}")
    return DatasetChoice("cifar10", "default: no sidecar or repair record names the checkpoint's dataset")


def _check_tolerance(value: float) -> float:
    if not value > 0:
        raise UsageError(f"--tolerance must be > 0 (got {value})")
    return float(value)


def run_onnx(args) -> list[str]:
    checkpoint = Path(args.checkpoint)
    batch = ox.parse_batch(args.batch)
    tolerance = _check_tolerance(args.tolerance)
    if args.check_images < 0:
        raise UsageError(f"--check-images must be >= 0 (0 = the whole test split; got {args.check_images})")
    model = load_checkpoint(checkpoint)
    output = Path(args.output) if args.output else checkpoint.with_suffix(".onnx")
    side = ox.sidecar_path(output)
    for path in (output, side):
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists: pass --force to overwrite it, or choose another --output")
    choice = choose_dataset(args.dataset, checkpoint, model.arch())
    split = load_split(choice.name, "test", args.data_dir, download=not args.no_download)
    if args.check_images:
        split = split.head(args.check_images)
    source_sha = file_sha256(checkpoint)
    start = time.perf_counter()
    data = ox.export_bytes(model, args.opset, batch, metadata={"source_sha256": source_sha})
    export_seconds = time.perf_counter() - start
    check = ox.compare_with_torch(model, ox.ort_session(data), split.inputs(), tolerance,
                                  what=f"{split.dataset}/{split.split} images")
    check.update(dataset=split.dataset, dataset_from=choice.origin, split=split.split,
                 export_seconds=round(export_seconds, 3))
    atomic_write_bytes(output, data)
    record = ox.sidecar(onnx_name=output.name, onnx_sha256=file_sha256(output), source=checkpoint,
                        source_sha256=source_sha, model=model, opset=args.opset, batch=batch, check=check)
    write_json(side, record)
    check_line = (f"onnx check       {check['images']} {check['what']}: max |logit diff| "
                  f"{check['max_abs_logit_diff']:.3g} (tolerance {tolerance:g}), predictions agree "
                  f"{check['predictions_agree']}/{check['images']}")
    wrote_line = (f"wrote            {output} (opset {args.opset}, batch {batch}, {len(data) / 1e6:.1f} MB, "
                  f"exported in {export_seconds:.1f} s)")
    return [f"model            {checkpoint} (channels {model.arch()['channels']}, hidden {model.hidden})",
            f"dataset          {split.dataset} ({choice.origin})", check_line, wrote_line, f"wrote            {side}"]


def run_state_dict(args) -> list[str]:
    done = convert_checkpoint(args.checkpoint, args.to, args.output, force=args.force)
    lines = [(f"converted        {done['source']} ({done['source_layout']} keys) -> {done['layout']} keys, "
              f"{done['tensors']} tensors unchanged")]
    if done["dropped_wrapper_entries"]:
        lines.append(f"dropped          wrapper entries {', '.join(done['dropped_wrapper_entries'])}")
    lines.append(f"wrote            {done['output']}")
    return lines


def default_benchmark_dir(checkpoint: Path, editset_path: Path) -> Path:
    editset_name = editset_path.name.removesuffix(".pt").removesuffix("_edit_dataset")
    return ARTIFACTS_DIR / "vnncomp" / safe_name(f"{checkpoint.stem}__{editset_name}")


def run_vnnlib(args) -> list[str]:
    checkpoint, editset_path = Path(args.checkpoint), Path(args.editset)
    tolerance = _check_tolerance(args.tolerance)
    if args.epsilon < 0:
        raise UsageError(f"--epsilon must be >= 0 (got {args.epsilon})")
    model = load_checkpoint(checkpoint)
    editset = load_editset(editset_path)
    out = Path(args.output) if args.output else default_benchmark_dir(checkpoint, editset_path)
    record = build_benchmark(model, editset, out, checkpoint=checkpoint, editset_path=editset_path,
                             margin=args.margin, epsilon=args.epsilon, timeout=args.timeout,
                             encoding=args.encoding, opset=args.opset, tolerance=tolerance, force=args.force)
    return [*summary(record), f"wrote            {out}/ (onnx/, vnnlib/, instances.csv, README.md, benchmark.json)"]
