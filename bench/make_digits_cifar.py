"""Write a real-image labelled set in the CIFAR-10 folder format, for benchmarks away from CIFAR-10 itself.

The images are scikit-learn's handwritten digits (1,797 real 8x8 scans, classes 0-9), upsampled to 32x32 RGB:
real images with real label noise, shipped inside a package, so no download. Class k stands in for CIFAR class k.
Run (scikit-learn is not a dependency of the toolkit; uv fetches it for this one command):

    uv run --with scikit-learn python bench/make_digits_cifar.py --output /tmp/digits

and point any tool at it with ``--data-dir /tmp/digits --no-download`` (the folder holds cifar-10-batches-py).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder that will hold cifar-10-batches-py/")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of the images in test_batch")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None) -> int:
    from sklearn.datasets import load_digits

    args = build_parser().parse_args(argv)
    digits = load_digits()
    img = (digits.images / 16.0 * 255).astype(np.uint8)                    # (n, 8, 8) in 0..255
    img = np.repeat(np.repeat(img, 4, axis=1), 4, axis=2)                   # (n, 32, 32)
    rgb = np.stack([img] * 3, axis=1).reshape(len(img), -1)                 # (n, 3072) CIFAR row layout
    labels = digits.target.astype(int)
    order = np.random.default_rng(args.seed).permutation(len(labels))
    n_test = int(round(args.test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    out = Path(args.output) / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(train, 5)
    for i, part in enumerate(parts, 1):
        _dump(out / f"data_batch_{i}", rgb[part], labels[part], f"training batch {i} of 5")
    _dump(out / "test_batch", rgb[test], labels[test], "testing batch 1 of 1")
    with open(out / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(k) for k in range(10)], "num_cases_per_batch": len(parts[0]),
                     "num_vis": 3072}, f)
    print(f"wrote {out}: {len(train)} train and {n_test} test images (sklearn digits, 32x32 RGB)")
    return 0


def _dump(path: Path, data: np.ndarray, labels: np.ndarray, name: str) -> None:
    with open(path, "wb") as f:
        pickle.dump({"data": data, "labels": labels.tolist(), "batch_label": name}, f)


if __name__ == "__main__":
    raise SystemExit(main())
