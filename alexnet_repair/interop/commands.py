"""The subcommands of ``convert_model.py``: onnx, state-dict, vnnlib."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..data import load_split
from ..editsets import load_editset
from ..errors import UsageError
from ..fileio import atomic_write_bytes, write_json
from ..model import file_sha256, load_checkpoint
from ..paths import ARTIFACTS_DIR, safe_name
from . import onnx_export as ox
from .benchmark import build_benchmark, summary
from .statedict import convert_checkpoint

log = logging.getLogger(__name__)


def _check_tolerance(value: float) -> float:
    if not value > 0:
        raise UsageError(f"--tolerance must be > 0 (got {value})")
    return float(value)


def run_onnx(args) -> int:
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
    split = load_split(args.dataset, "test", args.data_dir, download=not args.no_download)
    if args.check_images:
        split = split.head(args.check_images)
    source_sha = file_sha256(checkpoint)
    start = time.perf_counter()
    data = ox.export_bytes(model, args.opset, batch, metadata={"source_sha256": source_sha})
    export_seconds = time.perf_counter() - start
    check = ox.compare_with_torch(model, ox.ort_session(data), split.inputs(), tolerance,
                                  what=f"{split.dataset}/{split.split} images")
    check.update(dataset=split.dataset, split=split.split, export_seconds=round(export_seconds, 3))
    atomic_write_bytes(output, data)
    record = ox.sidecar(onnx_name=output.name, onnx_sha256=file_sha256(output), source=checkpoint,
                        source_sha256=source_sha, model=model, opset=args.opset, batch=batch, check=check)
    write_json(side, record)
    print(f"model            {checkpoint} (channels {model.arch()['channels']}, hidden {model.hidden})")
    print(f"onnx check       {check['images']} {check['what']}: max |logit diff| {check['max_abs_logit_diff']:.3g} "
          f"(tolerance {tolerance:g}), predictions agree {check['predictions_agree']}/{check['images']}")
    print(f"wrote            {output} (opset {args.opset}, batch {batch}, {len(data) / 1e6:.1f} MB, "
          f"exported in {export_seconds:.1f} s)")
    print(f"wrote            {side}")
    return 0


def run_state_dict(args) -> int:
    done = convert_checkpoint(args.checkpoint, args.to, args.output, force=args.force)
    print(f"converted        {done['source']} ({done['source_layout']} keys) -> {done['layout']} keys, "
          f"{done['tensors']} tensors unchanged")
    if done["dropped_wrapper_entries"]:
        print(f"dropped          wrapper entries {', '.join(done['dropped_wrapper_entries'])}")
    print(f"wrote            {done['output']}")
    return 0


def default_benchmark_dir(checkpoint: Path, editset_path: Path) -> Path:
    editset_name = editset_path.name.removesuffix(".pt").removesuffix("_edit_dataset")
    return ARTIFACTS_DIR / "vnncomp" / safe_name(f"{checkpoint.stem}__{editset_name}")


def run_vnnlib(args) -> int:
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
    for line in summary(record):
        print(line)
    print(f"wrote            {out}/ (onnx/, vnnlib/, instances.csv, README.md, benchmark.json)")
    return 0
