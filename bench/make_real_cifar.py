"""Write a CIFAR-10-sized real-image set (50,000 train + 10,000 test, 10 classes) in the CIFAR-10 folder format.

Source: Fashion-MNIST (Zalando Research), 70,000 real photographs of Zalando catalogue articles in 10 classes
(T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot), 28x28 grayscale,
60,000 train (6,000 a class) and 10,000 test (1,000 a class). License: MIT (Expat), Copyright 2017 Zalando SE.
It ships, images inside, in Debian's package ``dataset-fashion-mnist`` (about 30 MB, the four original gzipped IDX
files under /usr/share/datasets/fashion-mnist), so nothing is downloaded at run time from outside the registries.

The train split is a seeded, class-balanced subset of the official train images (5,000 a class, like CIFAR-10's
50,000), shuffled and cut into 5 batches of 10,000; the test split is the official 10,000 test images, shuffled.
Each 28x28 image is padded with 2 black pixels a side (Fashion-MNIST's background is black) to 32x32 and
replicated to 3 channels. Class k is Fashion-MNIST's class k and stands in for CIFAR class k; batches.meta holds
Fashion-MNIST's names. The pickles use the official layout as ``pickle.load(f, encoding="bytes")`` gives it:
b"data" (N, 3072) uint8 rows (R plane, then G, then B, each row-major), b"labels", b"batch_label", b"filenames".
Only numpy is needed (no extra Python package). Run:

    apt-get install dataset-fashion-mnist        # once (root); or pass --source-dir to a folder of the 4 .gz files
    uv run python bench/make_real_cifar.py --output /tmp/realset

and point any tool at it with ``--dataset cifar10 --data-dir /tmp/realset --no-download``.
"""

from __future__ import annotations

import argparse
import gzip
import pickle
from pathlib import Path

import numpy as np

SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
TRAIN_SIZE, TEST_SIZE, BATCHES = 50_000, 10_000, 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder that will hold cifar-10-batches-py/")
    parser.add_argument("--source-dir", default=SOURCE_DIR,
                        help=f"folder with Fashion-MNIST's gzipped IDX files (default: {SOURCE_DIR}, "
                             f"from the Debian package dataset-fashion-mnist)")
    parser.add_argument("--seed", type=int, default=0, help="picks the train subset and both splits' order")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    src = Path(args.source_dir)
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    missing = [n for n in names if not (src / n).is_file()]
    if missing:
        print(f"error: {src} lacks {', '.join(missing)}: run 'apt-get install dataset-fashion-mnist' "
              f"or pass --source-dir")
        return 2
    train_x, train_y = _read_idx(src / names[0], 3), _read_idx(src / names[1], 1)
    test_x, test_y = _read_idx(src / names[2], 3), _read_idx(src / names[3], 1)
    rng = np.random.default_rng(args.seed)
    # class-balanced train subset: TRAIN_SIZE / 10 of each class, then one shuffle of the whole
    per_class = TRAIN_SIZE // len(CLASS_NAMES)
    keep = np.concatenate([rng.choice(np.flatnonzero(train_y == c), size=per_class, replace=False)
                           for c in range(len(CLASS_NAMES))])
    train = rng.permutation(keep)
    test = rng.permutation(len(test_y))[:TEST_SIZE]
    if len(train) < TRAIN_SIZE or len(test) < TEST_SIZE:
        print(f"note: only {len(train)} train and {len(test)} test images in {src}")
    out = Path(args.output) / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(train, BATCHES), 1):
        _dump(out / f"data_batch_{i}", train_x[part], train_y[part], part, "train", f"training batch {i} of {BATCHES}")
    _dump(out / "test_batch", test_x[test], test_y[test], test, "t10k", "testing batch 1 of 1")
    with open(out / "batches.meta", "wb") as f:
        pickle.dump({b"num_cases_per_batch": TRAIN_SIZE // BATCHES,
                     b"label_names": [n.encode() for n in CLASS_NAMES], b"num_vis": 3072}, f)
    print(f"wrote {out}: {len(train)} train and {len(test)} test images (Fashion-MNIST, 32x32 RGB, seed {args.seed})")
    return 0


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file (big-endian header: magic 0x0000080N, then N dims) as a uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise ValueError(f"{path}: magic {magic:#x}, expected {0x0800 + ndim:#x} (uint8 IDX with {ndim} dims)")
    dims = [int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _dump(path: Path, gray: np.ndarray, labels: np.ndarray, index: np.ndarray, source: str, name: str) -> None:
    """One CIFAR python batch: 28x28 gray -> padded 32x32 -> (n, 3072) rows of R, G, B planes."""
    padded = np.pad(gray, ((0, 0), (2, 2), (2, 2)))                               # (n, 32, 32), black border
    rows = np.ascontiguousarray(np.repeat(padded[:, None], 3, axis=1).reshape(len(gray), 3072))
    files = [f"fashion_mnist_{source}_{int(k):05d}_{CLASS_NAMES[int(c)].split('/')[0].lower().replace(' ', '_')}.png"
             .encode() for k, c in zip(index, labels)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": rows,
                     b"filenames": files}, f)


if __name__ == "__main__":
    raise SystemExit(main())
