"""alexnet_repair/repair/verify.py must fail: tampered repairs (a frozen weight changed, a margin below target,
an image misclassified, a change beyond the bound, a flipped ReLU after a hidden-layer repair) are refused with
the right reason, and run_repair.py then reports verify_failed, exits 1 and writes nothing."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import run_repair
from alexnet_repair.editsets import build_editset, draw_preserve_set
from alexnet_repair.evaluate import margins_of
from alexnet_repair.model import small_alexnet
from alexnet_repair.repair import RepairConfig, repair
from alexnet_repair.repair.verify import _pre_activations, verify

FROZEN = "a parameter outside the editable set changed"
MARGIN = 0.5
BOUND = 5.0
HIDDEN_ROWS = "0:64"


@pytest.fixture(scope="module")
def base(fitted_state):
    model = small_alexnet(scale=16, seed=0)
    model.load_state_dict(fitted_state)
    return model.eval()


@pytest.fixture(scope="module")
def edit(cifar_test, fitted_test_preds):
    """10 test images the fitted model misclassifies: (inputs, labels)."""
    idx = np.flatnonzero(fitted_test_preds != cifar_test.labels.numpy())[:10]
    return cifar_test.inputs(idx), cifar_test.labels[idx]


def _repair(base, edit, layer, rows=None):
    config = RepairConfig(layer=layer, rows=rows, param_bound=BOUND, margin=MARGIN, threads=1, solver="highs")
    result = repair(base, *edit, config)
    assert result.success, result.message
    return result.model, config, result.rows


@pytest.fixture(scope="module")
def last_layer(base, edit):
    """A verified repair of classifier.6: (model, config, rows). Tests tamper with copies."""
    return _repair(base, edit, "classifier.6")


@pytest.fixture(scope="module")
def hidden_layer(base, edit):
    """A verified repair of rows 0:64 of classifier.4 (a hidden layer: its ReLU pattern is part of the proof)."""
    return _repair(base, edit, "classifier.4", HIDDEN_ROWS)


def _check(base, model, edit, config, rows, **kw):
    return verify(base, model, *edit, config, rows, **kw)


def _margins(model, edit):
    with torch.no_grad():
        return margins_of(model.eval()(edit[0]), edit[1])


def test_the_untampered_repairs_verify(base, edit, last_layer, hidden_layer):
    for model, config, rows in (last_layer, hidden_layer):
        check = _check(base, model, edit, config, rows)
        assert check.ok and check.reasons == [] and check.correct == check.total == 10
        assert check.min_margin >= MARGIN and check.max_abs_change <= BOUND and check.pattern_flips == 0


@pytest.mark.parametrize("which, key, index", [
    ("last", "features.0.weight", (0, 0, 0, 0)),          # a convolution
    ("last", "classifier.1.weight", (3, 5)),               # a classifier layer before the edited one
    ("last", "classifier.4.bias", (7,)),
    ("hidden", "classifier.6.weight", (2, 1)),             # after the edited layer only biases may change
    ("hidden", "classifier.4.weight", (100, 0)),           # a row of the edited layer outside --rows 0:64
    ("hidden", "classifier.4.bias", (200,)),
])
def test_a_frozen_weight_changed_by_one_ulp(base, edit, last_layer, hidden_layer, which, key, index):
    model, config, rows = copy.deepcopy(last_layer if which == "last" else hidden_layer)
    with torch.no_grad():
        param = model.state_dict()[key]
        param[index] = torch.nextafter(param[index], torch.tensor(float("inf")))
    check = _check(base, model, edit, config, rows)
    assert not check.ok and not check.untouched_identical
    assert FROZEN in check.reasons


def _lower_target_logit(model, edit, by):
    """Lower the classifier.6 bias of the label of the lowest-margin edit image by ``by(its margin)`` (an editable
    parameter: only the margins move). Returns that image's position."""
    margins = _margins(model, edit)
    i = int(margins.argmin())
    with torch.no_grad():
        model.classifier[6].bias[int(edit[1][i])] -= by(float(margins[i]))
    return i


def test_a_margin_pushed_below_the_target(base, edit, last_layer):
    model, config, rows = copy.deepcopy(last_layer)
    i = _lower_target_logit(model, edit, lambda m: m - MARGIN / 2)  # that image's margin becomes MARGIN / 2
    check = _check(base, model, edit, config, rows)
    assert not check.ok and check.correct == 10 and check.fixed < 10
    assert check.min_margin == pytest.approx(MARGIN / 2, abs=1e-4) and float(_margins(model, edit)[i]) < MARGIN
    assert any(r.startswith("minimum margin") and r.endswith(f"< {MARGIN}") for r in check.reasons), check.reasons
    assert not any("misclassified" in r for r in check.reasons)
    assert check.untouched_identical and check.within_bound


def test_an_edit_image_misclassified_again(base, edit, last_layer):
    model, config, rows = copy.deepcopy(last_layer)
    _lower_target_logit(model, edit, lambda m: m + 0.1)
    check = _check(base, model, edit, config, rows)
    wrong = 10 - check.correct
    assert not check.ok and wrong >= 1 and check.min_margin < 0
    assert f"{wrong} of 10 edit images misclassified" in check.reasons
    # the same model passes when only the still-correct images are required (max-fixed's check)
    keep = torch.nonzero(_margins(model, edit) >= MARGIN).flatten()
    subset = _check(base, model, edit, config, rows, required=keep)
    assert subset.ok and subset.required == len(keep) and subset.correct == check.correct


def test_a_change_beyond_the_bound(base, edit, last_layer):
    """+ (bound + 1) on every class's bias: every margin and prediction stays, only the bound is broken."""
    model, config, rows = copy.deepcopy(last_layer)
    with torch.no_grad():
        model.classifier[6].bias += BOUND + 1.0
    check = _check(base, model, edit, config, rows)
    assert not check.ok and not check.within_bound and check.max_abs_change > BOUND
    assert check.correct == 10 and check.min_margin >= MARGIN and check.untouched_identical
    assert check.reasons == [f"max |change| {check.max_abs_change:.6g} exceeds the bound {BOUND}"]


def test_a_flipped_relu_on_a_hidden_layer_repair(base, edit, hidden_layer):
    """Turn off one active ReLU after classifier.4 for one edit image (through an editable bias row): the LP's
    linearisation no longer holds, so the repair is not proven even if the margins happened to survive."""
    model, config, rows = copy.deepcopy(hidden_layer)
    (z0,), (z1,) = (_pre_activations(m, edit[0], [5], "cpu") for m in (base, model))
    editable = torch.zeros(z1.shape[1], dtype=torch.bool)
    editable[torch.as_tensor(rows)] = True
    candidates = torch.where((z0 > 1e-3) & (z1 > 1e-3) & editable, z1, torch.tensor(float("inf")))
    i, unit = divmod(int(candidates.argmin()), z1.shape[1])
    assert torch.isfinite(candidates[i, unit])
    with torch.no_grad():
        model.classifier[4].bias[unit] -= float(z1[i, unit]) + 1e-3  # z of that unit for image i: about -1e-3
    check = _check(base, model, edit, config, rows)
    assert not check.ok and check.pattern_flips >= 1
    assert f"{check.pattern_flips} activation pattern(s) after classifier.4 changed" in check.reasons
    lenient = _check(base, model, edit, config, rows, check_patterns=False)  # fine-tuning's check counts only
    assert lenient.pattern_flips == check.pattern_flips
    assert not any("activation pattern" in r for r in lenient.reasons)


# ---------------------------------------------------------------- through run_repair.py

def _tamper(kind):
    """A stand-in for aprnn's apply_solution that builds the model from the LP solution, then spoils it."""
    from alexnet_repair.repair.bridge import apply_solution

    def spoiled(model, layer, rows, dW, db):
        if kind == "half":  # half the solved change: the edit images are not fixed
            dW, db = np.asarray(dW) / 2, [np.asarray(d) / 2 for d in db]
        repaired = apply_solution(model, layer, rows, dW, db)
        with torch.no_grad():
            if kind == "frozen":
                w = repaired.features[0].weight
                w[0, 0, 0, 0] = torch.nextafter(w[0, 0, 0, 0], torch.tensor(float("inf")))
            elif kind == "bound":
                repaired.classifier[6].bias += BOUND + 1.0
        return repaired

    return spoiled


@pytest.fixture
def editset_model(base):
    return base


@pytest.mark.parametrize("kind, reason, existing", [
    ("frozen", FROZEN, True),
    ("half", "edit images misclassified", False),
    ("bound", "exceeds the bound", True),
])
def test_run_repair_reports_verify_failed_and_writes_nothing(workdir, capsys, monkeypatch, editset_file,
                                                             fitted_checkpoint, kind, reason, existing):
    monkeypatch.setattr("alexnet_repair.repair.aprnn.apply_solution", _tamper(kind))
    out = workdir / "artifacts" / "repaired.pth"
    if existing:
        out.write_bytes(b"an earlier, verified repair")
    code = run_repair.main(["--edit-set", str(editset_file), "--weights", str(fitted_checkpoint), "--margin",
                            str(MARGIN), "--output", str(out), "--no-eval", "--quiet", "--threads", "1",
                            "--solver", "highs", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    record = json.loads(captured.out)
    assert record["status"] == "verify_failed" and record["output"] is None
    assert any(reason in r for r in record["verification"]["reasons"]), record["verification"]
    assert "error: repaired model failed verification" in captured.err and reason in captured.err
    if existing:
        assert out.read_bytes() == b"an earlier, verified repair"
    else:
        assert not out.exists()
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize("layer, rows", [("classifier.6", None), ("classifier.4", "0:32")])
def test_verify_rejects_a_model_that_loses_a_preserve_image(fitted_model, cifar_test, cifar_train, layer, rows):
    """On the last and on a hidden layer: the repair keeps every preserve image, and a model tampered so that one
    of them loses its label fails the check (which runs the repaired layers from the draw's kept layer inputs)."""
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=4, progress=False)
    preserve = draw_preserve_set(fitted_model, cifar_train, 40, margin=0.1, seed=0, layer=layer)
    config = RepairConfig(layer=layer, rows=rows, param_bound=5.0, margin=0.2, threads=1, preserve=len(preserve),
                          preserve_margin=0.1)
    result = repair(fitted_model, es.images, es.labels, config, preserve=preserve)
    assert result.success, result.message
    assert verify(fitted_model, result.model, es.images, es.labels, config, result.rows, preserve=preserve).ok
    tampered = copy.deepcopy(result.model)
    with torch.no_grad():
        margins = margins_of(tampered(preserve.images), preserve.labels)
        p = int(margins.argmin())
        label = int(preserve.labels[p])
        tampered.classifier[6].bias[label] -= float(margins[p]) + 1.0   # one weight: the label's bias
    check = verify(fitted_model, tampered, es.images, es.labels, config, result.rows, preserve=preserve)
    assert not check.ok and check.preserve_kept < len(preserve)
    assert any("preserve images lost" in r for r in check.reasons)
