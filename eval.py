"""Evaluate an AlexNet checkpoint: overall and per-class test accuracy, and optionally an edit set.

With ``--edit-set PATH`` the table also holds the edit-set accuracy, the minimum margin over the edit images
(checked against ``--margin``), and the accuracy on the drawdown set (test images not in the edit set or its
held-out part), so any checkpoint - ours or one repaired elsewhere - can be checked against an edit set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from alexnet_repair.cli import (add_common_args, add_data_args, add_device_args, device_from, script_main,
                                setup_logging)
from alexnet_repair.provenance import versions
from alexnet_repair.data import load_split
from alexnet_repair.errors import UsageError
from alexnet_repair.evaluate import class_table, logits_of, margins_of, predict
from alexnet_repair.fileio import write_json
from alexnet_repair.model import file_sha256, load_checkpoint
from alexnet_repair.paths import path_for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="path to a .pth checkpoint")
    parser.add_argument("--batch-size", type=int, default=128, help="evaluation batch size (default: 128)")
    parser.add_argument("--split", choices=["test", "train"], default="test", help="split to score (default: test)")
    parser.add_argument("--edit-set", default=None, help="also check this edit set (.pt from editset_generator.py)")
    parser.add_argument("--margin", type=float, default=None, help="with --edit-set: the margin every edit image needs")
    parser.add_argument("--json", action="store_true", help="print the JSON record instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_data_args(parser, default=None)
    add_device_args(parser)
    add_common_args(parser, seed=None)
    return parser


def edit_set_metrics(model, editset, preds, device, margin, same_split: bool = True) -> dict:
    """Edit-set accuracy and margins, and accuracy on the split minus the edit set and its held-out part.

    When the edit set comes from another split than ``preds`` (e.g. train), nothing is excluded from it.
    """
    logits = logits_of(model, editset.images, device)
    margins = margins_of(logits, editset.labels).numpy()
    correct = (logits.argmax(1) == editset.labels).numpy()
    known = editset.indices[editset.indices >= 0]
    excluded = np.concatenate([known, editset.holdout_indices]) if same_split else np.zeros(0, np.int64)
    drawdown_mask = ~preds.subset(excluded)
    record = {"edit_set": str(editset.meta.get("path", "")), "edit_size": len(editset),
              "edit_accuracy": float(100 * correct.mean()) if len(correct) else float("nan"),
              "edit_min_margin": float(margins.min()) if len(margins) else float("nan"),
              "drawdown_set_size": int(drawdown_mask.sum()), "drawdown_set_accuracy": preds.accuracy(drawdown_mask)}
    if same_split and len(editset.holdout_indices):
        record["holdout_accuracy"] = preds.accuracy(preds.subset(editset.holdout_indices))
    if margin is not None:
        record["margin"] = margin
        record["edit_margin_met"] = bool(len(margins) and margins.min() >= margin)
    return record


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    if args.margin is not None and args.edit_set is None:
        raise UsageError("--margin needs --edit-set")
    device = device_from(args)
    model = load_checkpoint(args.weights)
    editset = None
    if args.edit_set:
        from alexnet_repair.editsets import load_editset
        editset = load_editset(args.edit_set)
        editset.meta["path"] = args.edit_set
        built_on = (editset.meta.get("dataset") or "").removesuffix("-folder")
        args.dataset = args.dataset or built_on or "cifar10"
        if built_on and built_on != args.dataset and not editset.meta.get("legacy"):
            raise UsageError(f"edit set was built on {built_on!r} but --dataset is {args.dataset!r}")
    args.dataset = args.dataset or "cifar10"
    split = load_split(args.dataset, args.split, args.data_dir, download=not args.no_download)
    start = time.perf_counter()
    preds = predict(model, split, device, args.batch_size, progress=not args.quiet)
    record = {"weights": str(Path(args.weights)), "weights_sha256": file_sha256(args.weights),
              "dataset": split.dataset, "split": split.split, "images": len(split), "device": str(device),
              "accuracy": preds.accuracy(), "per_class_accuracy": preds.per_class()}
    if editset is not None:
        same_split = editset.meta.get("split", split.split) == split.split
        record.update(edit_set_metrics(model, editset, preds, device, args.margin, same_split))
    record["seconds"] = time.perf_counter() - start
    record["versions"] = versions()
    out = write_json(path_for("run_record", tool="eval", name=Path(args.weights).stem), record)
    if args.json:
        print(json.dumps({**record, "record": str(out)}, indent=2, default=str))
        return 0
    print(f"weights   {args.weights}")
    print(f"dataset   {split.dataset}/{split.split} ({len(split)} images) on {device}")
    print(f"accuracy  {record['accuracy']:.2f}%")
    if editset is not None:
        print(f"edit set  {args.edit_set}: {record['edit_accuracy']:.2f}% of {record['edit_size']} images, "
              f"min margin {record['edit_min_margin']:.4f}"
              + (f" (needs {args.margin}: {'met' if record['edit_margin_met'] else 'NOT met'})"
                 if args.margin is not None else ""))
        print(f"drawdown  {record['drawdown_set_accuracy']:.2f}% on {record['drawdown_set_size']} images "
              f"not in the edit set")
        if "holdout_accuracy" in record:
            print(f"held-out  {record['holdout_accuracy']:.2f}% on {len(editset.holdout_indices)} same-kind images")
    print(class_table({"accuracy %": record["per_class_accuracy"]}))
    print(f"record    {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
