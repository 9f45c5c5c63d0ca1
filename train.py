"""Train the base CIFAR-10 AlexNet and write artifacts/alexnet_base.pth plus a JSON sidecar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet_repair.cli import (add_common_args, add_data_args, add_device_args, device_from, script_main,
                                setup_logging)
from alexnet_repair.data import load_split
from alexnet_repair.errors import UsageError
from alexnet_repair.paths import path_for
from alexnet_repair.training import TrainConfig, train_base_model


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    add_data_args(parser)
    add_device_args(parser)
    add_common_args(parser, seed=defaults.seed)
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help=f"default {defaults.batch_size}")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam learning rate (default {defaults.lr})")
    parser.add_argument("--width-scale", type=int, default=1,
                        help="divide every layer width by this (1 = the canonical AlexNet; >1 for quick tests)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    parser.add_argument("--output", default=str(path_for("base_model")), help="checkpoint path")
    parser.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    output = Path(args.output)
    if output.is_dir() or output.with_suffix(".json").is_dir():
        raise UsageError(f"--output {output} (or its .json sidecar) is a folder: give a checkpoint file path")
    if output.exists() and not args.force:
        raise UsageError(f"{output} exists: pass --force to overwrite it, or choose another --output")
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        raise UsageError("--epochs and --batch-size must be >= 1 and --lr > 0")
    device = device_from(args)
    train_split = load_split(args.dataset, "train", args.data_dir, download=not args.no_download)
    test_split = load_split(args.dataset, "test", args.data_dir, download=not args.no_download)
    if args.limit is not None:
        if args.limit < 1:
            raise UsageError("--limit must be >= 1")
        train_split = train_split.head(args.limit)
    if args.width_scale < 1:
        raise UsageError("--width-scale must be >= 1")
    config = TrainConfig(args.epochs, args.batch_size, args.lr, args.seed)
    print(f"training AlexNet on {train_split.dataset}/train ({len(train_split)} images), "
          f"{config.epochs} epochs on {device}", file=sys.stderr)
    record = train_base_model(output, train_split, test_split, config, args.width_scale, device,
                              progress=not args.quiet)
    sidecar = output.with_suffix(".json")
    print(f"dataset         {train_split.dataset}")
    print(f"train accuracy  {record['train_accuracy']:.2f}%")
    print(f"test accuracy   {record['test_accuracy']:.2f}%")
    print(f"time            {record['seconds']:.1f} s")
    print(f"wrote           {output} and {sidecar}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
