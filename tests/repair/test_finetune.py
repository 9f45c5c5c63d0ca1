"""Fine-tuning baseline (repair.finetune): efficacy reached or honestly partial, only the editable set moves,
within the bound; seeded replay is deterministic; run_repair.py --method ft writes the checkpoint by the rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import run_repair
from alexnet_repair.editsets import build_editset, load_editset, save_editset
from alexnet_repair.evaluate import margins_of
from alexnet_repair.model import load_checkpoint
from alexnet_repair.repair import RepairConfig, repair
from alexnet_repair.repair.finetune import FTConfig, finetune
from alexnet_repair.repair.verify import _editable_mask


@pytest.fixture
def edit(cifar_test, fitted_test_preds):
    """8 images the fitted model gets wrong: (inputs (8, 3, 64, 64), labels (8,))."""
    wrong = np.flatnonzero(fitted_test_preds != cifar_test.labels.numpy())[:8]
    return cifar_test.inputs(wrong), cifar_test.labels[wrong]


def _margins(model, images, labels) -> torch.Tensor:
    with torch.no_grad():
        return margins_of(model(images), labels)


def test_ft_fixes_an_easy_case(fitted_model, edit):
    images, labels = edit
    config = RepairConfig(margin=0.5, param_bound=5.0, threads=1)
    result = finetune(fitted_model, images, labels, config, FTConfig(max_steps=500, lr=1e-2))
    assert result.status == "success" and result.success, result.message
    assert result.verification.efficacy == 100.0 and result.fixed_count == 8 and result.unfixable_indices == []
    assert 0 < result.iterations["steps"] < 500                       # stopped as soon as all were fixed
    assert (_margins(result.model, images, labels) >= 0.5).all()       # real predictions of the returned model
    assert result.record()["efficacy"] == 100.0


def test_ft_reports_partial_honestly(fitted_model, edit):
    images, labels = edit
    config = RepairConfig(margin=0.5, threads=1)
    result = finetune(fitted_model, images, labels, config, FTConfig(max_steps=2, lr=1e-3))
    assert result.status == "partial" and not result.success and result.iterations["steps"] == 2
    fixed = _margins(result.model, images, labels) >= 0.5
    hits = (result.model(images).argmax(1) == labels).float().mean().item() * 100
    assert result.fixed_count == int(fixed.sum()) < 8
    assert result.unfixable_indices == torch.nonzero(~fixed).flatten().tolist()
    assert result.unfixable_labels == labels[~fixed].tolist()
    assert result.verification.efficacy == pytest.approx(hits) and result.verification.efficacy < 100


@pytest.mark.parametrize("layer, rows", [("classifier.4", "3:9"), ("classifier.6", None), ("classifier.1", "0,5,7")])
def test_ft_moves_only_the_editable_set_within_the_bound(fitted_model, edit, layer, rows):
    images, labels = edit
    bound = 0.01
    config = RepairConfig(layer=layer, rows=rows, margin=0.5, param_bound=bound, threads=1)
    result = finetune(fitted_model, images, labels, config, FTConfig(max_steps=15, lr=0.05))
    assert result.model is not None
    old, new = fitted_model.state_dict(), result.model.state_dict()
    masks = _editable_mask(fitted_model, config.layer, result.rows)
    reached = 0.0
    for key, before in old.items():
        mask = masks.get(key, torch.zeros_like(before, dtype=torch.bool))
        assert torch.equal(new[key][~mask], before[~mask]), key           # bit-identical outside the set
        diff = (new[key].double() - before.double()).abs()
        assert float(diff.max()) <= bound, key                            # within the bound, after float32
        reached = max(reached, float(diff.max()))
    assert reached > 0.9 * bound                                          # the clamp was active
    assert result.verification.within_bound and result.verification.untouched_identical


def test_ft_with_replay_is_deterministic(fitted_model, edit, cifar_train):
    images, labels = edit
    config = RepairConfig(margin=0.5, threads=1)
    ft = FTConfig(max_steps=20, lr=1e-2, replay=8, replay_pool=50, seed=3)
    first = finetune(fitted_model, images, labels, config, ft, replay=cifar_train)
    second = finetune(fitted_model, images, labels, config, ft, replay=cifar_train)
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    assert first.details["ft"]["replay"] == 8


def test_engine_dispatches_ft(fitted_model, edit):
    images, labels = edit
    result = repair(fitted_model, images, labels, RepairConfig(margin=0.5, method="ft", threads=1))
    assert result.formulation == "ft" and result.solver.startswith("torch-")


@pytest.fixture
def editset_path(workdir, fitted_model, cifar_test):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=8, progress=False)
    pt, _ = save_editset(es, workdir / "data/edit_sets/ft.pt")
    return pt


def _run(capsys, *args):
    code = run_repair.main(list(args) + ["--no-eval", "--quiet", "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith("{") else None), err


def test_run_repair_ft_checkpoint_rule(workdir, capsys, editset_path, fitted_checkpoint, fitted_model):
    base = ["--edit-set", str(editset_path), "--weights", str(fitted_checkpoint), "--method", "ft",
            "--margin", "0.5", "--threads", "1"]
    out = workdir / "artifacts/ft.pth"
    code, rec, err = _run(capsys, *base, "--ft-max-steps", "1", "--ft-lr", "1e-4", "--output", str(out))
    assert code == 1 and rec["status"] == "partial" and not out.exists() and "--save-partial" in err
    assert rec["fixed_count"] < 8 and len(rec["unfixable"]) == 8 - rec["fixed_count"]
    code, rec, _ = _run(capsys, *base, "--ft-max-steps", "1", "--ft-lr", "1e-4", "--output", str(out),
                        "--save-partial")
    assert code == 1 and rec["output"] == str(out) and out.exists()
    assert rec["efficacy"] == pytest.approx(rec["verification"]["correct"] * 100 / 8)
    code, rec, _ = _run(capsys, *base, "--ft-max-steps", "500", "--ft-lr", "1e-2", "--output", str(out))
    assert code == 0 and rec["status"] == "success" and rec["fixed_count"] == 8
    saved = load_checkpoint(out)
    es = load_editset(editset_path)
    assert (_margins(saved, es.images, es.labels) >= 0.5).all()


def test_run_repair_ft_replay_reads_the_train_split(workdir, capsys, editset_path, fitted_checkpoint, cifar_dir):
    code, rec, err = _run(capsys, "--edit-set", str(editset_path), "--weights", str(fitted_checkpoint), "--method",
                          "ft", "--margin", "0.5", "--ft-max-steps", "5", "--ft-replay", "4", "--data-dir",
                          str(cifar_dir), "--no-download", "--output", str(workdir / "artifacts/r.pth"))
    assert code in (0, 1) and rec is not None, err
    assert rec["details"]["ft"]["replay"] == 4 and rec["iterations"]["steps"] <= 5


@pytest.mark.slow
def test_sweep_with_both_methods_and_the_side_by_side_analysis(tmp_path, cifar_dir, fitted_checkpoint):
    import csv
    from contextlib import chdir

    import analysis
    import experiment_runner

    args = ["--dataset", "cifar10", "--data-dir", str(cifar_dir), "--no-download", "--weights",
            str(fitted_checkpoint), "--solver", "highs", "--threads", "1", "--quiet", "--repair-set-sizes", "3", "6",
            "--repair-set-types", "misclassified", "--param-bound", "20", "--margin", "0.5", "--methods", "aprnn",
            "ft", "--output-file", "results/experiment.csv"]
    with chdir(tmp_path):
        assert experiment_runner.main(args) == 0
        assert analysis.main(["results/experiment.csv", "--contact-sheets", "0"]) == 0
    with open(tmp_path / "results/experiment.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["method"] for r in rows) == ["aprnn", "aprnn", "ft", "ft"]
    for row in rows:
        assert row["drawdown"] != "" and float(row["efficacy"]) > 0 and row["fixed_count"] != ""
    out = tmp_path / "results/analysis"
    with open(out / "methods.csv", newline="") as handle:
        assert {r["method"] for r in csv.DictReader(handle)} == {"aprnn", "ft"}
    assert (out / "methods.png").stat().st_size > 0 and "Methods side by side" in (out / "report.html").read_text()
