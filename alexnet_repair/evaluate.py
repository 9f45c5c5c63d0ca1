"""Predictions and accuracy metrics: overall, per class, on index subsets, with margins."""

from __future__ import annotations

import logging

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .data import CLASS_NAMES, DataSource, Split
from .errors import DataError
from .progress_log import progress


log = logging.getLogger(__name__)


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a bar: off when ``progress`` is False, else None - tqdm then draws it only when
    its stream (stderr) is a terminal, so logs redirected to a file get no bar frames."""
    return None if progress else True


@dataclass
class Predictions:
    """The model's outputs on (part of) a split, in dataset order."""

    indices: np.ndarray   # (n,) dataset indices
    labels: np.ndarray    # (n,) true labels
    preds: np.ndarray     # (n,) argmax predictions
    probs: np.ndarray     # (n, 10) softmax probabilities (float32)
    margins: np.ndarray   # (n,) logit[label] - max other logit (negative = misclassified)

    def accuracy(self, mask=None) -> float:
        """Percentage correct (over ``mask`` if given); NaN for an empty selection."""
        correct = self.preds == self.labels
        if mask is not None:
            correct = correct[mask]
        return float(100.0 * correct.mean()) if correct.size else float("nan")

    def per_class(self, mask=None) -> list[float]:
        return [self.accuracy((self.labels == c) & (True if mask is None else mask)) for c in range(len(CLASS_NAMES))]

    def subset(self, dataset_indices) -> np.ndarray:
        """Boolean mask of the rows whose dataset index is in ``dataset_indices``."""
        return np.isin(self.indices, np.asarray(dataset_indices, dtype=np.int64))


@torch.no_grad()
def logits_of(model: torch.nn.Module, inputs: torch.Tensor, device="cpu", batch_size: int = 256) -> torch.Tensor:
    """Logits (n, 10) float32 on the CPU for already-preprocessed inputs (n, 3, 64, 64)."""
    model.eval().to(device)
    out = [model(inputs[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, len(CLASS_NAMES))


def margins_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logit[label] - max over other classes, per row (n,)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    target = logits.gather(1, labels[:, None])[:, 0]
    others = logits.scatter(1, labels[:, None], float("-inf")).max(dim=1).values
    return target - others


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, device="cpu", batch_size: int = 128, index=None,
            progress: bool = True, desc: str = "evaluate") -> Predictions:
    """One batched pass of ``model`` over ``split`` (or the dataset indices ``index``)."""
    model.eval().to(device)
    total = len(split) if index is None else len(index)
    parts = {"indices": [], "labels": [], "logits": []}
    bar = tqdm(total=total, desc=desc, unit="img", disable=bar_disabled(progress), leave=False)
    for x, y, idx in split.batches(batch_size, index):
        parts["logits"].append(model(x.to(device)).float().cpu())
        parts["labels"].append(y)
        parts["indices"].append(idx)
        bar.update(len(y))
    bar.close()
    logits = torch.cat(parts["logits"]) if parts["logits"] else torch.zeros(0, len(CLASS_NAMES))
    labels = torch.cat(parts["labels"]) if parts["labels"] else torch.zeros(0, dtype=torch.long)
    indices = torch.cat(parts["indices"]) if parts["indices"] else torch.zeros(0, dtype=torch.long)
    return Predictions(indices.numpy(), labels.numpy(), logits.argmax(1).numpy(),
                       torch.softmax(logits, 1).numpy(), margins_of(logits, labels).numpy())


def class_table(per_class_rows: dict[str, list[float]]) -> str:
    """A fixed-width table: one line per class, one column per named accuracy list."""
    names = list(per_class_rows)
    lines = [f"{'class':<14}" + "".join(f"{n:>12}" for n in names)]
    for c, cname in enumerate(CLASS_NAMES):
        lines.append(f"{c} {cname:<12}" + "".join(f"{per_class_rows[n][c]:>12.2f}" for n in names))
    return "\n".join(lines)


def compare_models(base: Predictions, repaired: Predictions, edit_indices=(), holdout_indices=(),
                   holdout: tuple[Predictions, Predictions] | None = None, preserve_indices=()) -> dict:
    """What a repair did, as the field defines it (both Predictions over the same test split, same order).

    - test accuracy before/after on the whole split;
    - drawdown = accuracy before - after on the drawdown set (split images NOT in the edit set, the held-out set or
      ``preserve_indices``, the preserve images of a ``--preserve-split test`` repair, held correct by construction);
    - generalization = accuracy after - before on the held-out same-kind images (``holdout_indices`` of this split,
      or ``holdout`` = (before, after) predictions restricted to them when they live in another split);
    - per-class accuracy change on the drawdown set, and the worst class.
    Edit-set efficacy is measured on the edit images themselves (see repair verification), not here.
    """
    edit_indices = np.asarray(edit_indices, dtype=np.int64)
    holdout_indices = np.asarray(holdout_indices, dtype=np.int64)
    same_split_holdout = holdout_indices if holdout is None else np.zeros(0, np.int64)
    preserve_indices = np.asarray(preserve_indices, dtype=np.int64)
    drawdown_mask = ~base.subset(np.concatenate([edit_indices[edit_indices >= 0], same_split_holdout,
                                                 preserve_indices]))
    before, after = base.per_class(drawdown_mask), repaired.per_class(drawdown_mask)
    change = [a - b for a, b in zip(after, before)]
    finite = [(c, v) for c, v in enumerate(change) if np.isfinite(v)]
    worst_class, worst_change = min(finite, key=lambda cv: cv[1]) if finite else (None, float("nan"))
    out = {"baseline_test_accuracy": base.accuracy(), "repaired_test_accuracy": repaired.accuracy(),
           "drawdown_set_size": int(drawdown_mask.sum()), "drawdown_excludes_preserve": int(preserve_indices.size),
           "baseline_drawdown_accuracy": base.accuracy(drawdown_mask),
           "repaired_drawdown_accuracy": repaired.accuracy(drawdown_mask),
           "per_class_change": change, "worst_class": worst_class, "worst_class_change": worst_change}
    out["drawdown"] = out["baseline_drawdown_accuracy"] - out["repaired_drawdown_accuracy"]
    if holdout is None and len(holdout_indices):
        mask = base.subset(holdout_indices)
        holdout = (base, repaired) if mask.any() else None
        pair_masks = (mask, repaired.subset(holdout_indices))
    elif holdout is not None:
        pair_masks = (None, None)
    if holdout is not None:
        out["holdout_size"] = int(len(holdout_indices))
        out["baseline_holdout_accuracy"] = holdout[0].accuracy(pair_masks[0])
        out["repaired_holdout_accuracy"] = holdout[1].accuracy(pair_masks[1])
        out["generalization"] = out["repaired_holdout_accuracy"] - out["baseline_holdout_accuracy"]
    else:
        out.update(holdout_size=0, baseline_holdout_accuracy=float("nan"), repaired_holdout_accuracy=float("nan"),
                   generalization=float("nan"))
    return out


# The feature cache: the base model's activations over a fixed image set, so that models differing from it only in later
# classifier layers are evaluated by running just those layers.
#
# A repair of ``classifier.6`` leaves every earlier parameter bit-identical (the repair's verification checks
# this), so the repaired model's logits are ``repaired.classifier[6:](h)`` with ``h`` the cached input of
# ``classifier.6``: a (n, 4096) x (4096, 10) product instead of a full AlexNet pass. The cache is built in the
# same batches as :func:`alexnet_repair.evaluate.predict` (same shapes, same kernels), so its predictions equal
# ``predict``'s. A model whose convolutional features changed (e.g. fine-tuning) falls back to a full pass.

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


def evaluate_repair(base, repaired, editset, data: DataSource, device="cpu", quiet: bool = False,
                    base_preds: Predictions | None = None, preserve_test_indices=()) -> dict:
    """Drawdown, generalization and per-class change of a repair on the test split (and the edit set's split).

    The base model runs once over the test split; the repaired model runs only the layers the repair changed.
    ``preserve_test_indices``: test images a preserve set held correct by construction, left out of the drawdown."""
    progress.info("evaluating the repair on the test split (base model and repaired layers)")
    try:
        test = data.load("test")
    except DataError as err:
        log.warning("skipping drawdown evaluation: %s", err)
        return {}
    same = editset.meta.get("split", "test") == "test"
    first = first_changed_position(base, repaired)
    if base_preds is None and first is not None:  # one pass of the base model; the repaired one runs the tail only
        cache = FeatureCache.build(base, test, [first], device=device)
        base_preds, new_preds = cache.base_predictions(), cache.predictions(repaired, base, device)
    else:
        base_preds = base_preds or predict(base, test, device, progress=not quiet, desc="base model")
        new_preds = predict(repaired, test, device, progress=not quiet, desc="repaired model")
    holdout = None
    if not same and len(editset.holdout_indices):
        other = data.load(editset.meta["split"])
        holdout = tuple(predict(m, other, device, index=editset.holdout_indices, progress=not quiet)
                        for m in (base, repaired))
    return compare_models(base_preds, new_preds, editset.indices if same else (), editset.holdout_indices, holdout,
                          preserve_test_indices)
