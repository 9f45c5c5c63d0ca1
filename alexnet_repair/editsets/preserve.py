"""The preserve set (drawdown guard): images of a split that the base model classifies correctly with a margin,
which a repair must keep correct. Drawn with a seed, never overlapping the edit set or its held-out images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from alexnet_repair.data import Split
from alexnet_repair.errors import UsageError
from alexnet_repair.evaluate import FeatureCache
from alexnet_repair.model import layer_position

log = logging.getLogger(__name__)

SCAN_BATCH = 512  # images scored per step while looking for preserve candidates


@dataclass
class PreserveSet:
    images: torch.Tensor   # (P, 3, 64, 64) model inputs
    labels: torch.Tensor   # (P,) int64 true labels, which the repaired model must keep
    indices: np.ndarray    # (P,) dataset indices in ``split``
    split: str             # "train" or "test"
    dataset: str
    margin: float          # label logit - every other logit >= margin, kept after the repair
    features: dict = field(default_factory=dict)  # layer -> (P, in_k) float32 input of that classifier layer,
    #                                               from the draw's own pass (the repair reuses it)

    def __len__(self) -> int:
        return len(self.labels)


def draw_preserve_set(model, split: Split, count: int, margin: float = 0.0, seed: int = 0, exclude=(),
                      device="cpu", layer: str | None = None) -> PreserveSet:
    """``count`` images of ``split`` (not in ``exclude``) that ``model`` classifies correctly with ``margin``.

    The split is shuffled with ``seed`` and scored in batches until enough are found, so only a few more than
    ``count`` images are evaluated. Fewer candidates than ``count`` is logged and the set is smaller. With
    ``layer`` (a classifier layer), the chosen images' inputs of that layer are kept from the same pass.
    """
    if count < 0 or not np.isfinite(margin) or margin < 0:
        raise UsageError(f"--preserve must be >= 0 and --preserve-margin >= 0 (got {count}, {margin})")
    order = np.random.default_rng(seed).permutation(len(split))
    order = order[~np.isin(order, np.asarray(exclude, dtype=np.int64))]
    stops = [] if layer is None else [layer_position(layer)]
    chosen, kept = [], []
    for start in range(0, order.size, SCAN_BATCH):
        if sum(c.size for c in chosen) >= count:
            break
        cache = FeatureCache.build(model, split, stops, index=order[start:start + SCAN_BATCH], device=device)
        preds = cache.base_predictions()
        ok = (preds.preds == preds.labels) & (preds.margins >= margin)
        chosen.append(preds.indices[ok])
        if stops:
            kept.append(torch.cat(cache.inputs[stops[0]])[torch.from_numpy(ok)])
    indices = np.concatenate(chosen)[:count] if chosen else np.zeros(0, dtype=np.int64)
    if indices.size < count:
        log.warning("only %d of the %d requested preserve images: %s/%s has no more images the model classifies "
                    "correctly with margin %g", indices.size, count, split.dataset, split.split, margin)
    features = {layer: torch.cat(kept)[:count]} if kept else {}
    return PreserveSet(split.inputs(indices), split.labels[torch.as_tensor(indices, dtype=torch.long)].long(),
                       indices.astype(np.int64), split.split, split.dataset, float(margin), features)
