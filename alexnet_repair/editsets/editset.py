"""The edit set type: the images a repair must fix, their targets, provenance and held-out split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from alexnet_repair.data import CLASS_NAMES
from alexnet_repair.errors import DataError

KINDS = ("misclassified", "by-class")
FOCUSES = ("incorrect", "correct", "all")
SIZINGS = ("strict", "flexible")
SWEEP_TYPES = {"misclassified": ("misclassified", None),
               "class_homogeneous_incorrect": ("by-class", "incorrect"),
               "class_homogeneous_correct": ("by-class", "correct")}
FORMAT = "alexnet_repair.editset"
FORMAT_VERSION = 1
TENSOR_KEYS = ("images", "labels", "indices", "holdout_indices", "predictions", "probs")
IMAGE_SHAPE = (3, 64, 64)
CLASS_LIST = ", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES))


@dataclass
class EditSet:
    images: torch.Tensor            # (n, 3, 64, 64) float32 model inputs, in edit order
    labels: torch.Tensor            # (n,) int64 targets (= true labels)
    indices: np.ndarray             # (n,) int64 indices into meta["split"] of meta["dataset"]; -1 = unknown (legacy)
    holdout_indices: np.ndarray     # (h,) int64 same-kind images held out for generalization, disjoint from indices
    meta: dict                      # the JSON manifest
    predictions: torch.Tensor | None = None   # (n,) int64 the base model's predictions at build time
    probs: torch.Tensor | None = None         # (n, 10) float32 its softmax probabilities

    kind = property(lambda self: self.meta.get("kind"))
    focus = property(lambda self: self.meta.get("focus"))
    target_class = property(lambda self: self.meta.get("target_class"))
    dataset = property(lambda self: self.meta.get("dataset"))
    split = property(lambda self: self.meta.get("split"))
    legacy = property(lambda self: bool(self.meta.get("legacy", False)))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def drawdown_indices(self, split_size: int) -> np.ndarray:
        """Every index of the ``split_size``-image split that is neither edited nor held out (sorted)."""
        if self.legacy:
            raise DataError("a legacy edit set has no dataset indices, so its drawdown set is unknown: rebuild it "
                            "with editset_generator.py")
        used = np.concatenate([self.indices, self.holdout_indices])
        if used.size and used.max() >= split_size:
            raise DataError(f"edit set indices go up to {used.max()} but the split has {split_size} images "
                            f"(built from another split or dataset?)")
        return np.setdiff1d(np.arange(split_size, dtype=np.int64), used)

