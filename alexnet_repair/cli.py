"""Flags shared by the root scripts, defined once, and the error-to-exit-code wrapper."""

from __future__ import annotations

import argparse
import logging
import sys
from functools import wraps
from pathlib import Path

import torch

from .data import DATASETS
from .errors import AlexRepairError, UsageError


def add_data_args(parser: argparse.ArgumentParser, default: str | None = "cifar10") -> None:
    """--dataset/--data-dir/--no-download. ``default=None`` lets a script take the dataset from an edit set."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default=default,
                       help="cifar10 (downloaded into --data-dir on first use) or the offline 'synthetic' set"
                            + ("" if default else " (default: the edit set's dataset, else cifar10)"))
    group.add_argument("--data-dir", default="data", help="folder holding cifar-10-batches-py (default: data)")
    group.add_argument("--no-download", action="store_true", help="never try to download CIFAR-10")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cuda", action="store_true", help="run forward passes on the GPU (error if none)")


def add_common_args(parser: argparse.ArgumentParser, seed: int | None = 0) -> None:
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed, help=f"random seed (default: {seed})")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def analysis_parser(doc: str, csv_default: str, what: str, output_dir: str) -> argparse.ArgumentParser:
    """The analysis scripts' parser: CSV files (``what`` names them in the help), --output-dir, --log-level."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="*", default=[csv_default], help=f"{what} file(s) (default: %(default)s)")
    parser.add_argument("--output-dir", default=output_dir, help="default: %(default)s")
    add_common_args(parser, seed=None)
    return parser


def analysis_output(args) -> Path:
    """Set up logging for an analysis script and create its --output-dir."""
    setup_logging(args.log_level)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def add_solver_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("solver")
    group.add_argument("--solver", choices=["auto", "highs", "gurobi"], default="auto",
                       help="auto: Gurobi when a licence that fits the model exists, else HiGHS (default)")
    group.add_argument("--time-limit", type=float, default=None, help="solver time limit in seconds")
    group.add_argument("--threads", type=int, default=None, help="solver threads (default: the solver's choice)")


def device_from(args) -> torch.device:
    if getattr(args, "cuda", False):
        if not torch.cuda.is_available():
            raise UsageError("--cuda was given but no CUDA device is available (drop --cuda to run on the CPU)")
        return torch.device("cuda")
    return torch.device("cpu")


def setup_logging(level: str = "WARNING") -> None:
    logging.basicConfig(level=getattr(logging, level), format="%(levelname)s %(name)s: %(message)s", force=True)


def script_main(func):
    """Wrap ``main(argv) -> int``: user errors become one line on stderr and their exit code, never a traceback."""

    @wraps(func)
    def wrapper(argv=None) -> int:
        try:
            return int(func(argv) or 0)
        except AlexRepairError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
