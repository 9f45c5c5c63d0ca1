"""The offline ``synthetic`` dataset's pixels (data.py wraps them as a Split, labelled "synthetic" everywhere)."""

from __future__ import annotations

import numpy as np
import torch

SYNTHETIC_CHUNK = 500  # synthetic images built per step (bounds the temporaries; the pixels do not depend on it)


def synthetic_images(split: str, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 32, 32, 3) uint8, labels (n,) int64) of the offline ``synthetic`` set: deterministic from ``seed``,
    CIFAR-shaped, 10 classes.

    Each class has a smooth colour prototype. An image of class c is ``w * shift(proto[c]) +
    (1 - w) * shift(proto[c'])`` for a random other class c' with w ~ U(0.4, 1), plus a random smooth background
    and pixel noise. Images with w near or below 0.5 are genuinely ambiguous, so a trained AlexNet lands around
    75-90% test accuracy and has real misclassifications to repair. Train and test are drawn independently.
    """
    protos = _upsample(np.random.default_rng(seed).uniform(0, 1, size=(10, 3, 4, 4)).astype(np.float32))
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    other = (labels + rng.integers(1, 10, size=n)) % 10
    weight = rng.uniform(0.4, 1.0, size=(n, 1, 1, 1))
    # x = w * a + (1 - w) * b, then 0.75 * x + 0.25 * smooth + N(0, 0.06): every random draw for all images first,
    # in the original order, then the pixels chunk by chunk (the same float64 operations in the same order, so the
    # same pixels as one pass over all images, without fresh 200 MB arrays: on a VM their page faults cost seconds)
    where_a, where_b = _shift_index(labels, rng), _shift_index(other, rng)
    coarse = rng.uniform(0, 1, size=(n, 3, 3, 3)).astype(np.float32)  # smooth backgrounds, before upsampling
    images = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for lo in range(0, n, SYNTHETIC_CHUNK):
        part = slice(lo, min(lo + SYNTHETIC_CHUNK, n))
        x, b = _gather(protos, labels, where_a, part), _gather(protos, other, where_b, part)
        np.multiply(x, weight[part], out=x)
        np.multiply(b, 1 - weight[part], out=b)
        x += b
        x *= 0.75
        x += _upsample(coarse[part]) * 0.25
        rng.standard_normal(out=b)  # what rng.normal(0, 0.06) draws, before its scale
        b *= 0.06
        x += b
        x *= 255
        images[part] = np.clip(np.round(x, out=x), 0, 255, out=x)
    return images, labels.astype(np.int64)


def _upsample(coarse: np.ndarray) -> np.ndarray:
    """(n, 3, g, g) float32 random colours -> (n, 32, 32, 3) float64 smooth colour fields (bilinear)."""
    fine = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(32, 32), mode="bilinear",
                                           align_corners=True)
    return fine.permute(0, 2, 3, 1).numpy().astype(np.float64)


def _shift_index(which: np.ndarray, rng: np.random.Generator, size: int = 32, max_shift: int = 4):
    """(rows, cols) of each image's random roll by (dy, dx) in [-max_shift, max_shift], half of them flipped
    horizontally (the draws of one roll per image in ``which``)."""
    n = len(which)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    flips = rng.random(n) < 0.5
    rows = (np.arange(size) - shifts[:, :1]) % size  # np.roll: out[i] = in[(i - shift) % size]
    cols = (np.arange(size) - shifts[:, 1:]) % size
    return rows, np.where(flips[:, None], cols[:, ::-1], cols)


def _gather(images: np.ndarray, which: np.ndarray, where, part: slice) -> np.ndarray:
    """images[which[part]], rolled and flipped as ``where`` (from _shift_index) says: one gather."""
    rows, cols = where[0][part], where[1][part]
    return images[which[part][:, None, None], rows[:, :, None], cols[:, None, :]]
