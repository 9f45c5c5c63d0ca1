"""The preserve set's draw (editsets/preserve.py): never an edit or held-out image, images the model gets right,
seeded, and the repaired layer's inputs kept from the draw's own pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alexnet_repair.editsets import build_editset, draw_preserve_set
from alexnet_repair.editsets.preserve import ROUNDING_ROOM
from alexnet_repair.evaluate import margins_of
from alexnet_repair.repair import RepairConfig, preserve_set_for
from alexnet_repair.repair.lp.spec import LPSpec


def test_preserve_set_never_overlaps_the_edit_or_held_out_images(fitted_model, cifar_test):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=10, progress=False)
    config = RepairConfig(preserve=10_000, preserve_split="test")
    preserve = preserve_set_for(fitted_model, es, config, lambda split: cifar_test, seed=1)
    taken = set(es.indices.tolist()) | set(es.holdout_indices.tolist())
    assert len(preserve) > 0 and not taken & set(preserve.indices.tolist())
    with torch.no_grad():
        assert (fitted_model(preserve.images).argmax(1) == preserve.labels).all()
    again = preserve_set_for(fitted_model, es, RepairConfig(preserve=5, preserve_split="test"), lambda s: cifar_test,
                             seed=1)
    assert again.indices.tolist() == preserve.indices[:5].tolist()   # seeded: the same draw


@pytest.mark.parametrize("layer", ["classifier.6", "classifier.4"])
def test_the_draw_keeps_the_repaired_layers_inputs_of_its_images(fitted_model, cifar_train, layer):
    """The repair reuses the draw's own pass: the kept inputs are the float32 prefix's, bit for bit."""
    from alexnet_repair.repair.bridge import layer_inputs

    preserve = draw_preserve_set(fitted_model, cifar_train, 30, seed=2, layer=layer)
    kept = preserve.features.get(layer)
    assert kept is not None and kept.shape[0] == len(preserve) > 0
    assert torch.equal(kept, layer_inputs(fitted_model, preserve.images, layer, dtype=torch.float32))
    assert set(preserve.features) == {layer}


def test_all_draws_exactly_the_correctly_classified_images(fitted_model, cifar_train, predict_each):
    preserve = draw_preserve_set(fitted_model, cifar_train, "all", margin=0.5, seed=7, layer="classifier.6")
    right = np.flatnonzero(predict_each(fitted_model, cifar_train) == cifar_train.labels.numpy())
    assert preserve.indices.tolist() == right.tolist()
    assert preserve.features["classifier.6"].shape[0] == len(preserve) == right.size
    excluded = draw_preserve_set(fitted_model, cifar_train, "all", exclude=right[:3])
    assert excluded.indices.tolist() == right[3:].tolist()


def test_each_image_keeps_min_of_d_and_its_own_base_margin(fitted_model, cifar_train):
    preserve = draw_preserve_set(fitted_model, cifar_train, "all", margin=0.5)
    with torch.no_grad():
        base = margins_of(fitted_model.eval()(preserve.images), preserve.labels).numpy()
    assert (base > 0).all()
    assert preserve.margins == pytest.approx(np.minimum(np.maximum(base - ROUNDING_ROOM, 0), 0.5), abs=1e-6)
    assert ROUNDING_ROOM > LPSpec.margin_slack    # the unchanged model meets every preserve row of the LP
    assert (base < 0.5).any() and (base > 0.5).any()   # both kinds occur, so both branches of the min are checked
