"""APRNN provable repair of an AlexNet, and the baselines measured against it.

:func:`repair` (images and labels) and :func:`run_method` (an edit set and where its data lives) are the only
dispatchers: ``config.method`` picks APRNN (``aprnn/``, with its max-fixed fallback) or fine-tuning (``finetune.py``).
Layout: ``types`` (config and results), ``bridge`` (model <-> LP), ``verify`` (the float32 check of what is
saved), ``aprnn/``, ``finetune.py`` and ``lp/`` (the LP itself, no torch).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from alexnet_repair.data import DataSource, dataset_family
from alexnet_repair.editsets import PreserveSet, draw_preserve_set
from alexnet_repair.model import AlexNet
from alexnet_repair.repair.bridge import apply_solution, layer_inputs
from alexnet_repair.repair.lp.spec import FORMULATIONS, OBJECTIVES
from alexnet_repair.repair.aprnn import repair_aprnn
from alexnet_repair.repair.finetune import FTConfig, finetune
from alexnet_repair.repair.types import STATUSES, RepairConfig, RepairResult, Verification
from alexnet_repair.repair.verify import verify

log = logging.getLogger(__name__)

__all__ = ["FORMULATIONS", "OBJECTIVES", "STATUSES", "FTConfig", "RepairConfig", "RepairResult", "Verification",
           "apply_solution", "preserve_set_for", "layer_inputs", "repair", "run_method", "verify"]


def repair(model: AlexNet, images: torch.Tensor, labels: torch.Tensor, config: RepairConfig, device="cpu",
           ft: FTConfig | None = None, replay=None, preserve: PreserveSet | None = None) -> RepairResult:
    """Repair ``model`` on (images (N,3,64,64), labels (N,)) with ``config.method``; never modifies ``model``.

    ``ft`` / ``replay`` (a train Split) are fine-tuning's settings and replay images (method "ft" only);
    ``preserve``: images that must keep their label (APRNN: rows of the LP; fine-tuning: a hinge loss).
    """
    config.validate()
    if config.method == "ft":
        return finetune(model, images, labels, config, ft, replay, device, preserve)
    return repair_aprnn(model, images, labels, config, device, preserve)


def run_method(model, editset, config: RepairConfig, data: DataSource | None = None, ft: FTConfig | None = None,
               seed: int = 0, device="cpu") -> RepairResult:
    """Repair ``model`` on ``editset`` with the configured method: APRNN (the LP, default) or fine-tuning.

    ``data``: where the preserve set's and fine-tuning's replay images come from (default: the edit set's dataset
    in ./data); ``ft``: fine-tuning's settings (default FTConfig(seed=seed)); ``seed`` draws the preserve set.
    """
    config.validate()
    data = data or DataSource(dataset_family(editset.dataset))
    split = functools.cache(data.load)  # the preserve set and fine-tuning's replay may both read the train split
    preserve = preserve_set_for(model, editset, config, split, seed, device)
    ft = (ft or FTConfig(seed=seed)) if config.method == "ft" else None
    replay = split("train") if ft is not None and ft.replay else None
    return repair(model, editset.images, editset.labels, config, device, ft, replay, preserve)


def preserve_set_for(model, editset, config: RepairConfig, load, seed: int = 0, device="cpu") -> PreserveSet | None:
    """The preserve set of ``config`` for a repair on ``editset`` (None for ``--preserve 0``): drawn from
    ``load(config.preserve_split)`` with ``seed``, never overlapping the edit set or its held-out images."""
    if not config.preserve:
        return None
    exclude = ()
    if editset.meta.get("split", "test") == config.preserve_split:
        exclude = np.r_[editset.indices, editset.holdout_indices]
    return draw_preserve_set(model, load(config.preserve_split), config.preserve, config.preserve_margin, seed,
                             exclude, device, layer=config.layer)
