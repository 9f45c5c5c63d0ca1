"""editset_generator.py end to end: tiny CIFAR-format folder + tiny checkpoint, summary vs files, errors, show."""

from __future__ import annotations

import json

import numpy as np
import pytest

import editset_generator
from alexnet_repair.editsets import load_editset
from alexnet_repair.model import file_sha256


@pytest.fixture
def run(workdir, cifar_dir, fitted_checkpoint, capsys):
    """run(*args) -> (exit code, stdout, stderr) for a build on the tiny folder with the fitted checkpoint."""
    def _run(*args, weights=True):
        argv = list(args) + ["--data-dir", str(cifar_dir), "--no-download", "--quiet"]
        if weights:
            argv += ["--weights", str(fitted_checkpoint)]
        code = editset_generator.main(argv)
        out, err = capsys.readouterr()
        return code, out, err
    return _run


def _summary(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        key, _, value = line.partition("  ")
        rows.setdefault(key.strip(), []).append(value.strip())
    return rows


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_misclassified_end_to_end(run, workdir, fitted_checkpoint, fitted_test_preds, cifar_test):
    code, out, _ = run("misclassified", "--max-size", "10")
    assert code == 0
    pt = workdir / "data/edit_sets/misclassified_edit_dataset.pt"
    manifest = workdir / "data/edit_sets/misclassified_edit_metadata.json"
    es, meta = load_editset(pt), json.loads(manifest.read_text())
    rows = _summary(out)
    wrong = int(np.sum(fitted_test_preds != cifar_test.labels.numpy()))
    assert rows["dataset"] == ["cifar10-folder/test (100 images)"]
    assert rows["candidates"] == [f"{wrong} misclassified images"]
    assert rows["edit set"] == ["10 (requested 10, flexible)"] and len(es) == 10
    assert rows["held out"] == [f"{wrong // 2} (holdout fraction 0.5)"] and len(es.holdout_indices) == wrong // 2
    assert rows["drawdown set"] == [f"{100 - 10 - wrong // 2} (the rest of the split)"]
    assert rows["base accuracy"] == [f"{100 * (100 - wrong) / 100:.2f}%"]
    histogram = ", ".join(f"{c} {name}: {n}" for c, (name, n) in enumerate(meta["class_histogram"].items()) if n)
    assert rows["class histogram"] == [histogram]
    assert rows["wrote"] == ["data/edit_sets/misclassified_edit_dataset.pt",
                             "data/edit_sets/misclassified_edit_metadata.json"]
    assert meta["checkpoint_sha256"] == file_sha256(fitted_checkpoint) and meta["seed"] == 0
    assert (fitted_test_preds[es.indices] != es.labels.numpy()).all()


def test_by_class_names_and_focus(run, workdir):
    code, out, _ = run("by-class", "--target-class", "3", "--max-size", "2", "--holdout-fraction", "0")
    assert code == 0 and "class 3 cat, focus incorrect" in out
    es = load_editset(workdir / "data/edit_sets/class_3_cat_edit_dataset.pt")
    assert (es.labels == 3).all() and len(es.holdout_indices) == 0
    code, out, _ = run("by-class", "--target-class", "cat", "--focus", "correct", "--split", "train", "--seed", "4")
    assert code == 0
    es = load_editset(workdir / "data/edit_sets/class_3_cat_correct_edit_dataset.pt")
    assert (es.split, es.focus, es.meta["seed"]) == ("train", "correct", 4)
    assert (es.predictions == 3).all()


def test_flexible_short_says_so_and_output_flag(run, workdir):
    code, out, _ = run("by-class", "--target-class", "3", "--max-size", "50", "--output", "sets/mine.pt")
    assert code == 0 and "note             only" in out and "(requested 50, flexible)" in out
    assert (workdir / "sets/mine.pt").is_file() and (workdir / "sets/mine.json").is_file()


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args,message", [
    (["by-class", "--target-class", "11"], "0 airplane, 1 automobile, 2 bird, 3 cat"),
    (["by-class"], "needs --target-class"),
    (["by-class", "--target-class", "3", "--max-size", "50", "--sizing", "strict"], "strict sizing: 50 edit images"),
    (["misclassified", "--max-size", "0"], "--max-size must be at least 1"),
    (["misclassified", "--holdout-fraction", "1.5"], "--holdout-fraction"),
    (["misclassified", "--output", "x.json"], "must end in .pt"),
])
def test_bad_arguments_write_nothing(run, workdir, args, message):
    code, out, err = run(*args)
    assert code == 2 and message in _error_line(err) and out == ""
    assert list((workdir / "data/edit_sets").iterdir()) == []


def test_missing_weights(run, workdir):
    code, _, err = run("misclassified", weights=False)
    assert code == 2 and "run `uv run python train.py` first" in _error_line(err)
    assert err.count("\n") == 1


def test_existing_set_needs_force(run, workdir):
    assert run("misclassified", "--max-size", "5")[0] == 0
    before = _snapshot(workdir / "data")
    code, _, err = run("misclassified", "--max-size", "7")
    assert code == 2 and "--force" in _error_line(err)
    assert _snapshot(workdir / "data") == before
    assert run("misclassified", "--max-size", "7", "--force")[0] == 0
    assert len(load_editset(workdir / "data/edit_sets/misclassified_edit_dataset.pt")) == 7


def test_show_writes_contact_sheet(run, workdir, fitted_checkpoint, capsys):
    import matplotlib.image

    assert run("misclassified", "--max-size", "10")[0] == 0
    pt = workdir / "data/edit_sets/misclassified_edit_dataset.pt"
    assert editset_generator.main(["show", str(pt), "--max-images", "9"]) == 0
    png = workdir / "data/edit_sets/misclassified_edit_dataset_contact.png"
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (2 * 180, 8 * 150) and image[..., :3].std() > 0
    assert editset_generator.main(["show", str(pt), "--weights", str(fitted_checkpoint), "--output", "c.png"]) == 0
    assert matplotlib.image.imread(workdir / "c.png").shape[:2] == (2 * 180, 8 * 150)
    capsys.readouterr()
    assert editset_generator.main(["show", "data/edit_sets/none.pt"]) == 2
    assert "edit set not found" in _error_line(capsys.readouterr().err)
