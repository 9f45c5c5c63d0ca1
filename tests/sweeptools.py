"""Helpers of the sweep and analysis tests: experiment_runner.py arguments for the tiny CIFAR folder, and CSV rows."""

from __future__ import annotations

import csv


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
