"""The base model's activations over a fixed image set, so that models differing from it only in later
classifier layers are evaluated by running just those layers.

A repair of ``classifier.6`` leaves every earlier parameter bit-identical (the repair's verification checks
this), so the repaired model's logits are ``repaired.classifier[6:](h)`` with ``h`` the cached input of
``classifier.6``: a (n, 4096) x (4096, 10) product instead of a full AlexNet pass. The cache is built in the
same batches as :func:`alexnet_repair.evaluate.predict` (same shapes, same kernels), so its predictions equal
``predict``'s. A model whose convolutional features changed (e.g. fine-tuning) falls back to a full pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import Split
from ..evaluate import Predictions, margins_of

EVAL_BATCH = 128   # batch size of every cached pass (evaluate.predict's default)


@dataclass
class FeatureCache:
    """Cached inputs of classifier positions (stop -> list of (b, d) float32 batches) over ``split[index]``."""

    split: Split
    index: np.ndarray | None                     # dataset indices covered (None = the whole split)
    labels: np.ndarray                           # (n,) int64 (numpy copies, never views of tensors: pickling
    indices: np.ndarray                          # (n,) int64  a tensor for a worker moves its memory to shm)
    inputs: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    base_logits: torch.Tensor | None = None      # (n, 10) float32

    @classmethod
    @torch.no_grad()
    def build(cls, base: torch.nn.Module, split: Split, stops, index=None, device="cpu") -> "FeatureCache":
        """One pass of ``base`` over the images, keeping the input of each classifier position in ``stops``."""
        base = base.eval().to(device)
        stops = sorted({int(s) for s in stops})
        inputs = {s: [] for s in stops}
        labels, indices, logits = [], [], []
        for x, y, idx in split.batches(EVAL_BATCH, index):
            h = base.embed(x.to(device))
            for pos, module in enumerate(base.classifier):
                if pos in inputs:
                    inputs[pos].append(h.cpu().clone())
                h = module(h)
            logits.append(h.float().cpu())
            labels.append(y)
            indices.append(idx)
        cat = (lambda parts, empty: torch.cat(parts) if parts else empty)
        return cls(split, None if index is None else np.asarray(index, dtype=np.int64),
                   cat(labels, torch.zeros(0, dtype=torch.long)).numpy().copy(),
                   cat(indices, torch.zeros(0, dtype=torch.long)).numpy().copy(),
                   inputs, cat(logits, torch.zeros(0, 10)))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def base_predictions(self) -> Predictions:
        return self._predictions(self.base_logits)

    @torch.no_grad()
    def logits(self, model: torch.nn.Module, base: torch.nn.Module, device="cpu") -> torch.Tensor:
        """(n, 10) logits of ``model``; cached layers are reused where ``model`` still equals ``base`` before them."""
        first = first_changed_position(base, model)
        if first is None:                           # the convolutional part changed: a full pass
            return self._full_logits(model, device)
        usable = [s for s in self.inputs if s <= first]
        if first >= len(model.classifier) and self.base_logits is not None:
            return self.base_logits.clone()
        if not usable:
            return self._full_logits(model, device)
        stop = max(usable)
        tail = model.eval().to(device).classifier[stop:]
        return torch.cat([tail(h.to(device).clone()).float().cpu() for h in self.inputs[stop]]) if len(self) else \
            torch.zeros(0, 10)

    def predictions(self, model: torch.nn.Module, base: torch.nn.Module, device="cpu") -> Predictions:
        return self._predictions(self.logits(model, base, device))

    @torch.no_grad()
    def _full_logits(self, model, device) -> torch.Tensor:
        model = model.eval().to(device)
        out = [model(x.to(device)).float().cpu() for x, _, _ in self.split.batches(EVAL_BATCH, self.index)]
        return torch.cat(out) if out else torch.zeros(0, 10)

    def _predictions(self, logits: torch.Tensor) -> Predictions:
        return Predictions(self.indices.copy(), self.labels.copy(), logits.argmax(1).numpy(),
                           torch.softmax(logits, 1).numpy(), margins_of(logits, torch.from_numpy(self.labels)).numpy())


def first_changed_position(base: torch.nn.Module, model: torch.nn.Module) -> int | None:
    """Position in ``classifier`` of the first module whose parameters differ from ``base``'s.

    ``len(classifier)`` when nothing differs; None when a parameter outside the classifier differs.
    """
    if base is model:
        return len(model.classifier)
    old, new = base.state_dict(), model.state_dict()
    changed = [k for k in old if not torch.equal(old[k], new[k])]
    if any(not k.startswith("classifier.") for k in changed):
        return None
    positions = [int(k.split(".")[1]) for k in changed]
    return min(positions) if positions else len(model.classifier)


def classifier_stop(layer: str) -> int:
    """'classifier.6' -> 6: the position of a classifier layer, i.e. the cache stop that feeds it."""
    return int(layer.split(".")[1])
