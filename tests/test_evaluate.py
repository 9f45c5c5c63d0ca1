"""compare_models against numbers worked out by hand (not against itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alexnet_repair.evaluate import Predictions, compare_models


def _preds(indices, labels, preds) -> Predictions:
    n = len(indices)
    return Predictions(np.asarray(indices, dtype=np.int64), np.asarray(labels, dtype=np.int64),
                       np.asarray(preds, dtype=np.int64), np.zeros((n, 10), np.float32), np.zeros(n, np.float32))


# Ten test images, listed in split order, with dataset indices that are NOT their positions.
#   position     0   1   2   3   4   5   6   7   8   9
#   index       17   3  42   8   0   5   9  11   2  30
#   label        0   1   0   1   0   0   1   1   2   2
#   base         1   0   1   1   0   0   1   0   2   2      correct: 3 4 5 6 8 9          -> 6/10 = 60 %
#   repaired     0   1   0   1   0   1   1   1   1   1      correct: 0 1 2 3 4 6 7        -> 7/10 = 70 %
# edit set = {17, 3} (plus -1, an unknown index of a legacy set: ignored); held out = {42, 8}
# drawdown set = positions 4..9 (indices 0 5 9 11 2 30), 6 images:
#   base correct 4 5 6 8 9 -> 5/6;  repaired correct 4 6 7 -> 3/6;  drawdown = 500/6 - 50 = 33.33 points
#   per class on it: class 0 (pos 4, 5): 100 -> 50 = -50;  class 1 (pos 6, 7): 50 -> 100 = +50;
#                    class 2 (pos 8, 9): 100 -> 0 = -100 (the worst);  classes 3..9: no images (NaN)
# held out (pos 2, 3): base 1/2 = 50 %, repaired 2/2 = 100 %  -> generalization = +50 points
INDICES = [17, 3, 42, 8, 0, 5, 9, 11, 2, 30]
LABELS = [0, 1, 0, 1, 0, 0, 1, 1, 2, 2]
BASE = [1, 0, 1, 1, 0, 0, 1, 0, 2, 2]
REPAIRED = [0, 1, 0, 1, 0, 1, 1, 1, 1, 1]


def test_drawdown_generalization_and_per_class_by_hand():
    out = compare_models(_preds(INDICES, LABELS, BASE), _preds(INDICES, LABELS, REPAIRED),
                         edit_indices=[17, 3, -1], holdout_indices=[42, 8])
    assert out["baseline_test_accuracy"] == pytest.approx(60.0)
    assert out["repaired_test_accuracy"] == pytest.approx(70.0)
    assert out["drawdown_set_size"] == 6
    assert out["baseline_drawdown_accuracy"] == pytest.approx(500 / 6)
    assert out["repaired_drawdown_accuracy"] == pytest.approx(50.0)
    assert out["drawdown"] == pytest.approx(100 / 3)  # before - after: positive = the repair cost accuracy
    assert out["per_class_change"][:3] == pytest.approx([-50.0, 50.0, -100.0])
    assert all(math.isnan(v) for v in out["per_class_change"][3:])
    assert out["worst_class"] == 2 and out["worst_class_change"] == pytest.approx(-100.0)
    assert out["holdout_size"] == 2
    assert out["baseline_holdout_accuracy"] == pytest.approx(50.0)
    assert out["repaired_holdout_accuracy"] == pytest.approx(100.0)
    assert out["generalization"] == pytest.approx(50.0)  # after - before: positive = it generalised


def test_held_out_images_from_another_split_by_hand():
    """Held-out images in another split (e.g. a train-split edit set): passed as their own (before, after)
    predictions; then only the edit images leave the drawdown set (the held-out indices are not this split's)."""
    held_before = _preds([100, 101, 102, 103], [3, 3, 4, 4], [3, 0, 0, 0])  # 1/4 = 25 %
    held_after = _preds([100, 101, 102, 103], [3, 3, 4, 4], [3, 3, 4, 0])   # 3/4 = 75 %
    out = compare_models(_preds(INDICES, LABELS, BASE), _preds(INDICES, LABELS, REPAIRED),
                         edit_indices=[17, 3], holdout_indices=[100, 101, 102, 103],
                         holdout=(held_before, held_after))
    # drawdown set = positions 2..9: base correct 3 4 5 6 8 9 -> 6/8; repaired correct 2 3 4 6 7 -> 5/8
    assert out["drawdown_set_size"] == 8
    assert out["baseline_drawdown_accuracy"] == pytest.approx(75.0)
    assert out["repaired_drawdown_accuracy"] == pytest.approx(62.5)
    assert out["drawdown"] == pytest.approx(12.5)
    # class 0 (pos 2, 4, 5): 2/3 -> 2/3 = 0; class 1 (pos 3, 6, 7): 2/3 -> 3/3 = +33.3; class 2: 100 -> 0
    assert out["per_class_change"][:3] == pytest.approx([0.0, 100 / 3, -100.0])
    assert out["worst_class"] == 2
    assert out["holdout_size"] == 4 and out["generalization"] == pytest.approx(50.0)
    assert out["baseline_holdout_accuracy"] == pytest.approx(25.0)
    assert out["repaired_holdout_accuracy"] == pytest.approx(75.0)


def test_no_held_out_set_and_a_whole_split_edit_set():
    out = compare_models(_preds(INDICES, LABELS, BASE), _preds(INDICES, LABELS, REPAIRED))
    assert out["drawdown_set_size"] == 10 and out["drawdown"] == pytest.approx(-10.0)  # 60 % -> 70 %
    assert out["holdout_size"] == 0 and math.isnan(out["generalization"])
    everything = compare_models(_preds(INDICES, LABELS, BASE), _preds(INDICES, LABELS, REPAIRED),
                                edit_indices=INDICES)
    assert everything["drawdown_set_size"] == 0 and math.isnan(everything["drawdown"])
    assert everything["worst_class"] is None and math.isnan(everything["worst_class_change"])
