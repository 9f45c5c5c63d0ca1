"""Train a base model the way train.py did before it applied He initialisation (PyTorch's default init).

The fast-path issue's base models came from that train.py: ``--dataset synthetic --epochs 2`` gave 70.25% test
accuracy with seed 0 and 46.1% with seed 7. This script rebuilds them (the same seeds, default init and training
loop; on this CPU box it gives the same 70.25% and 46.10%), so benchmarks run on the models the issue measured:

    uv run python bench/train_default_init.py --seed 0 --output artifacts/old_seed0.pth   # 70.25%
    uv run python bench/train_default_init.py --seed 7 --output artifacts/old_seed7.pth   # 46.10%

About 4-6 minutes each on 2 cores. train.py (He init) is the one to use for real work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from alexnet_repair.data import load_split
from alexnet_repair.model import save_checkpoint
from alexnet_repair.training import TrainConfig, small_alexnet, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seeds the default init and the batch order")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--output", required=True, help="checkpoint path (not overwritten)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if Path(args.output).exists():
        print(f"error: {args.output} exists", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    model = small_alexnet(1)  # PyTorch's default init, drawn from the seeded global generator
    result = train(model, load_split("synthetic", "train"), load_split("synthetic", "test"),
                   TrainConfig(epochs=args.epochs, seed=args.seed), progress=False)
    save_checkpoint(model, args.output)
    print(f"train accuracy {result.train_accuracy:.2f}%  test accuracy {result.test_accuracy:.2f}%  "
          f"({result.seconds:.0f} s)  wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
