"""The model-level repair engine and run_repair.py: a verified checkpoint, or nothing written; a preserve set kept
whole, and a conflict with it infeasible with advice."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import eval as eval_script
import run_repair
from alexnet_repair.editsets import PreserveSet, build_editset
from alexnet_repair.evaluate import margins_of
from alexnet_repair.repair import RepairConfig, repair
from alexnet_repair.repair.bridge import parse_rows
from alexnet_repair.repair.verify import _pre_activations


@pytest.fixture
def wrong(cifar_test, fitted_test_preds):
    """10 test images the fitted model misclassifies: (inputs, labels)."""
    idx = np.flatnonzero(fitted_test_preds != cifar_test.labels.numpy())[:10]
    return cifar_test.inputs(idx), cifar_test.labels[idx]


def _predict(model, images):
    with torch.no_grad():
        return model.eval()(images)


@pytest.mark.parametrize("layer, rows", [("classifier.6", None), ("classifier.4", "0:64"), ("classifier.4", "32")])
def test_repair_fixes_every_edit_image_and_touches_nothing_else(fitted_model, wrong, layer, rows):
    images, labels = wrong
    config = RepairConfig(layer=layer, rows=rows, param_bound=5.0, margin=0.5, threads=1)
    result = repair(fitted_model, images, labels, config)
    assert result.success, result.message
    logits = _predict(result.model, images)
    assert (logits.argmax(1) == labels).all()
    assert float(margins_of(logits, labels).min()) >= 0.5
    base, new = fitted_model.state_dict(), result.model.state_dict()
    editable_rows = result.rows if result.rows is not None else list(range(base[f"{layer}.weight"].shape[0]))
    later = {"classifier.6": [], "classifier.4": ["classifier.6.bias"]}[layer]
    for key in base:
        if key in (f"{layer}.weight", f"{layer}.bias"):
            keep = np.setdiff1d(np.arange(base[key].shape[0]), editable_rows)
            assert torch.equal(base[key][keep], new[key][keep])
            assert float((new[key] - base[key]).abs().max()) <= 5.0
        elif key in later:
            assert float((new[key] - base[key]).abs().max()) <= 5.0
        else:
            assert torch.equal(base[key], new[key]), key  # bit-identical
    if rows == "32":
        assert len(result.rows) == 32


def test_hidden_layer_repair_keeps_its_activation_patterns(fitted_model, wrong):
    images, labels = wrong
    result = repair(fitted_model, images, labels, RepairConfig(layer="classifier.4", rows="0:64", margin=0.5,
                                                               threads=1))
    assert result.success, result.message
    positions = [5]  # the classifier's ReLU after classifier.4
    for z0, z1 in zip(_pre_activations(fitted_model, images, positions, "cpu"),
                      _pre_activations(result.model, images, positions, "cpu")):
        sure = z0.abs() > 1e-5
        assert torch.equal((z0 > 0)[sure], (z1 > 0)[sure])
    assert result.verification.pattern_flips == 0


def test_infeasible_and_time_limit_return_no_model(fitted_model, wrong):
    images, labels = wrong
    infeasible = repair(fitted_model, images, labels, RepairConfig(param_bound=1e-3, margin=50.0, threads=1))
    assert infeasible.status == "infeasible" and infeasible.model is None
    assert "--param-bound" in infeasible.message and "max-fixed" in infeasible.message


@pytest.mark.parametrize("rows, message", [("5:2", "selects no valid row"), ("abc", "use a:b"),
                                           ("0", "a count must lie")])
def test_bad_rows(fitted_model, wrong, rows, message):
    from alexnet_repair.errors import UsageError
    with pytest.raises(UsageError, match=message):
        parse_rows(rows, fitted_model, "classifier.6", *wrong)


def test_run_repair_then_eval_checks_the_edit_set(workdir, capsys, editset_file, fitted_checkpoint, cifar_dir):
    out = workdir / "artifacts" / "alexnet_repaired.pth"
    code = run_repair.main(["misclassified", "--weights", str(fitted_checkpoint), "--margin", "0.5",
                            "--data-dir", str(cifar_dir), "--no-download", "--quiet", "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "status          success" in printed and "points fixed    10/10" in printed and "drawdown" in printed
    record = json.loads(next((workdir / "results").glob("repair_*.json")).read_text())
    assert record["status"] == "success" and record["output"] == str(out.relative_to(workdir))
    assert record["verification"]["min_margin"] >= 0.5 and "drawdown" in record["metrics"]
    assert eval_script.main(["--weights", str(out), "--data-dir", str(cifar_dir), "--no-download", "--quiet",
                             "--edit-set", str(editset_file), "--margin", "0.5", "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["edit_accuracy"] == 100.0 and checked["edit_margin_met"] is True
    assert checked["drawdown_set_size"] == 100 - 10 - len(json.loads(
        editset_file.with_name("misclassified_edit_metadata.json").read_text())["holdout_indices"])


def test_failed_repair_keeps_the_existing_output(workdir, capsys, editset_file, fitted_checkpoint):
    out = workdir / "artifacts" / "alexnet_repaired.pth"
    out.write_bytes(b"previous repair")
    code = run_repair.main(["--edit-set", str(editset_file), "--weights", str(fitted_checkpoint),
                            "--param-bound", "0.001", "--margin", "50", "--no-eval", "--quiet", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "no repair exists" in err
    assert out.read_bytes() == b"previous repair"


@pytest.mark.parametrize("args, message", [
    (["--layer", "features.0"], "unknown layer"),
    (["--param-bound", "-1"], "--param-bound"),
    (["--margin", "-2"], "--margin"),
    (["--weights", "nothing.pth"], "checkpoint not found"),
    (["--edit-set", "corrupt.pt"], "corrupt.pt"),
    (["by-class", "--target-class", "11"], "0 airplane"),
])
def test_bad_input_exits_2_with_one_line(workdir, capsys, editset_file, fitted_checkpoint, args, message):
    (workdir / "corrupt.pt").write_bytes(b"\x80\x02garbage")
    base = [] if ("--edit-set" in args or "by-class" in args) else ["--edit-set", str(editset_file)]
    if "--weights" not in args:
        base += ["--weights", str(fitted_checkpoint)]
    code = run_repair.main(base + args + ["--no-eval", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (workdir / "artifacts" / "alexnet_repaired.pth").exists()


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_large_logits_still_verify(fitted_model, wrong, scale):
    """Logits of size ~1e4-1e5: float32 rounding of the saved model exceeds the LP's absolute margin slack;
    the engine re-solves with a larger slack instead of reporting a failed verification."""
    model = copy.deepcopy(fitted_model)
    with torch.no_grad():
        model.classifier[6].weight *= scale
        model.classifier[6].bias *= scale
    images, labels = wrong
    config = RepairConfig(param_bound=5.0 * scale, margin=0.5, threads=1)
    result = repair(model, images, labels, config)
    assert result.success, result.message
    logits = _predict(result.model, images)
    assert (logits.argmax(1) == labels).all()
    assert float(margins_of(logits, labels).min()) >= 0.5


def test_repair_keeps_every_preserve_image(fitted_model, edit_and_preserve):
    es, preserve = edit_and_preserve
    config = RepairConfig(param_bound=5.0, margin=0.5, threads=1, preserve=len(preserve), preserve_margin=0.1)
    result = repair(fitted_model, es.images, es.labels, config, preserve=preserve)
    assert result.success, result.message
    with torch.no_grad():
        kept = margins_of(result.model(preserve.images), preserve.labels)
        fixed = margins_of(result.model(es.images), es.labels)
    assert float(kept.min()) >= 0.1 and float(fixed.min()) >= 0.5
    assert result.verification.preserve_kept == len(preserve) == result.preserve_size
    assert result.preserve_indices == preserve.indices.tolist()
    plain = repair(fitted_model, es.images, es.labels, RepairConfig(param_bound=5.0, margin=0.5, threads=1))
    with torch.no_grad():
        lost = int((margins_of(plain.model(preserve.images), preserve.labels) < 0.1).sum())
    assert lost > 0   # without the preserve rows the same repair loses some of them: the rows do work


def test_conflict_with_the_preserve_set_is_infeasible_with_advice(fitted_model, cifar_test):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=4, progress=False)
    # the edit images themselves, under their predicted (wrong) labels, as preserve images: no repair can hold both
    with torch.no_grad():
        predicted = fitted_model(es.images).argmax(1)
    preserve = PreserveSet(predicted, np.arange(len(es)), "test", "cifar10", 0.0, image_tensor=es.images)
    config = RepairConfig(param_bound=5.0, margin=0.5, threads=1, preserve=len(es))
    result = repair(fitted_model, es.images, es.labels, config, preserve=preserve)
    assert result.status == "infeasible" and result.model is None
    assert "fewer --preserve images" in result.message and "--preserve-margin" in result.message
