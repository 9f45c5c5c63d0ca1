"""The preserve set (drawdown guard): images of a split that the base model classifies correctly, which a repair
must keep correct, each with margin >= min(D, its own base margin) (D = --preserve-margin). Drawn with a seed,
never overlapping the edit set or its held-out images; ``all`` takes every such image of the split."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from alexnet_repair.data import Split
from alexnet_repair.errors import UsageError
from alexnet_repair.evaluate import FeatureCache
from alexnet_repair.model import layer_position
from alexnet_repair.progress_log import progress

log = logging.getLogger(__name__)

SCAN_BATCH = 512  # images scored per step while looking for preserve candidates
ALL = "all"  # --preserve all: every image of the split the base model classifies correctly


@dataclass
class PreserveSet:
    labels: torch.Tensor   # (P,) int64 true labels, which the repaired model must keep
    indices: np.ndarray    # (P,) dataset indices in ``split``
    split: str             # "train" or "test"
    dataset: str
    margin: float          # D: each image keeps label logit - every other logit >= min(D, its base margin)
    margins: np.ndarray | None = None  # (P,) float32 those required margins (None: D for every image)
    features: dict = field(default_factory=dict)  # layer -> (P, in_k) float32 input of that classifier layer,
    #                                               from the draw's own pass (the repair and its check reuse it)
    source: Split | None = field(default=None, repr=False)  # where ``images`` are read from, when asked for
    image_tensor: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.margins is None:
            self.margins = np.full(len(self.labels), self.margin, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def images(self) -> torch.Tensor:
        """(P, 3, 64, 64) model inputs, made from ``source`` on first use (a whole training set of them is
        gigabytes: the repair and its check work from ``features``)."""
        if self.image_tensor is None:
            self.image_tensor = self.source.inputs(self.indices)
        return self.image_tensor

    @images.setter
    def images(self, value: torch.Tensor) -> None:
        self.image_tensor = value


ROUNDING_ROOM = 2e-4  # twice LPSpec.margin_slack (the LP asks every margin for that much more than it guarantees):
#                      the unchanged model then meets its rows by 1e-4, room for the ~1e-6 by which the base margin
#                      of the float32 model differs from the LP's float64 one


def required_margins(base_margins: np.ndarray, margin: float) -> np.ndarray:
    """Each preserve image's kept margin: min(D, its base margin - ROUNDING_ROOM) (not below 0), so a repair never
    has to raise an image the base model gets right only narrowly, and never lets it fall below where it was.

    The room makes the unchanged model meet the LP's row (kept margin + margin slack < the base margin): without it
    every image below D would miss its row at zero change by the slack alone and join the first LP, which on a
    hidden layer turned a 20-image repair into a dense IPM of 200 points (10 minutes unsolved)."""
    base = np.asarray(base_margins, dtype=np.float32)
    return np.minimum(np.maximum(base - np.float32(ROUNDING_ROOM), np.float32(0.0)), np.float32(margin))


def draw_preserve_set(model, split: Split, count: int | str, margin: float = 0.0, seed: int = 0, exclude=(),
                      device="cpu", layer: str | None = None) -> PreserveSet:
    """``count`` images (or ``"all"``) of ``split`` (not in ``exclude``) that ``model`` classifies correctly, each
    to be kept with margin min(``margin``, its base margin).

    The split is shuffled with ``seed`` and scored in batches until enough are found, so only a few more than
    ``count`` images are evaluated (``all``: every image, in dataset order). Fewer candidates than a number
    ``count`` is logged and the set is smaller. With ``layer`` (a classifier layer), the chosen images' inputs of
    that layer are kept from the same pass.
    """
    take_all = count == ALL
    if (not take_all and (not isinstance(count, (int, np.integer)) or count < 0)) or not np.isfinite(margin) \
            or margin < 0:
        raise UsageError(f"--preserve must be a count >= 0 or 'all', and --preserve-margin >= 0 (got {count}, "
                         f"{margin})")
    order = np.arange(len(split)) if take_all else np.random.default_rng(seed).permutation(len(split))
    order = order[~np.isin(order, np.asarray(exclude, dtype=np.int64))]
    count = order.size if take_all else int(count)
    stops = [] if layer is None else [layer_position(layer)]
    chosen, base, kept = [], [], []
    for start in range(0, order.size, SCAN_BATCH):
        if sum(c.size for c in chosen) >= count:
            break
        cache = FeatureCache.build(model, split, stops, index=order[start:start + SCAN_BATCH], device=device)
        preds = cache.base_predictions()
        ok = preds.preds == preds.labels
        chosen.append(preds.indices[ok])
        base.append(preds.margins[ok])
        if stops:
            kept.append(torch.cat(cache.inputs[stops[0]])[torch.from_numpy(ok)])
        if take_all and (start // SCAN_BATCH) % 20 == 19:
            progress.info("preserve set: scored %d of %d images", start + SCAN_BATCH, order.size)
    indices = np.concatenate(chosen)[:count] if chosen else np.zeros(0, dtype=np.int64)
    if indices.size < count and not take_all:
        log.warning("only %d of the %d requested preserve images: %s/%s has no more images the model classifies "
                    "correctly", indices.size, count, split.dataset, split.split)
    progress.info("preserve set: %d images of %s/%s the base model gets right", indices.size, split.dataset,
                  split.split)
    margins = required_margins(np.concatenate(base)[:count] if base else np.zeros(0), margin)
    features = {layer: torch.cat(kept)[:count]} if kept else {}
    return PreserveSet(split.labels[torch.as_tensor(indices, dtype=torch.long)].long(), indices.astype(np.int64),
                       split.split, split.dataset, float(margin), margins, features, source=split)
