"""Helpers of the sweep and analysis tests: experiment_runner.py arguments for the tiny CIFAR folder, and CSV rows."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from alexnet_repair.experiments.csvstore import read_csv
from alexnet_repair.experiments.schema import PRESERVE_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def common(cifar_dir, weights) -> list[str]:
    """The flags every test sweep shares: the tiny dataset, ``weights``, HiGHS on one thread, no progress bars."""
    return ["--dataset", "cifar10", "--data-dir", str(cifar_dir), "--no-download", "--weights", str(weights),
            "--solver", "highs", "--threads", "1", "--quiet"]


def args_for(cifar_dir, weights, out, iterations) -> list[str]:
    """A stochastic sweep: one misclassified chain of batch size 3 into ``out``."""
    return ["stochastic", *common(cifar_dir, weights), "--batch-sizes", "3",
            "--repair-set-homogeneities", "misclassified", "--num-iterations", str(iterations), "--param-bound", "20",
            "--margin", "0.05", "--output-file", out]


def rows_of(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


HOLDER = """import sys, time, pathlib
from alexnet_repair.experiments.claims import Claims
with Claims(sys.argv[1]).hold(sys.argv[2]) as got:
    assert got
    pathlib.Path(sys.argv[3]).touch()
    time.sleep(600)
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}   # reuse cached bytecode
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _until(condition, what: str, limit: float = 300.0) -> None:
    """Poll ``condition`` (a guard against hanging, not a timing assertion)."""
    deadline = time.time() + limit
    while not condition():
        assert time.time() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def write_old_format(path, out) -> list[str]:
    """``path`` as a CSV of the toolkit before the preserve columns (they are dropped) written to ``out``."""
    header, rows = read_csv(path)
    old = [c for c in header if c not in PRESERVE_COLUMNS]
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, old, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return old
