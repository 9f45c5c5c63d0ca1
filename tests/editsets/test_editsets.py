"""alexnet_repair.editsets: selection against an independent per-image loop, sizing, held-out split, files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from alexnet_repair.editsets import (SWEEP_TYPES, build_editset, candidate_indices, check_against_split,
                                     default_editset_path, load_editset, parse_class, parse_sweep_type,
                                     save_editset, split_sizes)
from alexnet_repair.errors import DataError, UsageError
from alexnet_repair.evaluate import predict
from alexnet_repair.model import small_alexnet
from alexnet_repair.plots import contact_sheet


@pytest.fixture
def known(fitted_model, cifar_test, fitted_test_preds):
    """(model, split, its predictions by the independent per-image loop, true labels)."""
    return fitted_model, cifar_test, fitted_test_preds, cifar_test.labels.numpy()


@pytest.fixture(scope="module")
def batched(fitted_state, cifar_test):
    """One batched pass of the fitted model over cifar_test, reused by the tests that are not about that pass."""
    model = small_alexnet(scale=16, seed=0)
    model.load_state_dict(fitted_state)
    return predict(model, cifar_test, progress=False)


@pytest.fixture
def fast(known, batched):
    """``known`` plus the shared batched predictions: builds skip the model pass."""
    return known + (batched,)


def _build(known, kind="misclassified", **kw):
    model, split = known[:2]
    predictions = known[4] if len(known) > 4 else None
    return build_editset(model, split, kind, predictions=predictions, progress=False, **kw)


def _one_line(err) -> bool:
    return "\n" not in str(err.value) and str(err.value)


def test_misclassified_matches_per_image_loop(known):
    model, split, preds, labels = known
    expected = set(np.flatnonzero(preds != labels))
    assert 20 < len(expected) < 100  # the fixture model is wrong on some images, right on others
    es = _build(known, holdout_fraction=0.5)
    assert set(es.indices) | set(es.holdout_indices) == expected
    assert not set(es.indices) & set(es.holdout_indices)
    assert len(es.holdout_indices) == len(expected) // 2 and len(es) == len(expected) - len(expected) // 2
    assert torch.equal(es.labels, split.labels[torch.from_numpy(es.indices)])
    assert np.array_equal(es.predictions.numpy(), preds[es.indices])
    assert torch.equal(es.images, split.inputs(es.indices)) and es.images.shape[1:] == (3, 64, 64)
    assert (es.kind, es.focus, es.target_class, es.dataset, es.split) == ("misclassified", None, None,
                                                                          "cifar10-folder", "test")
    assert es.meta["base_accuracy"] == pytest.approx(100 * np.mean(preds == labels))
    assert sum(es.meta["class_histogram"].values()) == len(es)


@pytest.mark.parametrize("focus", ["incorrect", "correct", "all"])
def test_by_class_focus_matches_per_image_loop(known, focus):
    _, _, preds, labels = known
    cls = 3
    of_class = labels == cls
    mask = {"incorrect": of_class & (preds != labels), "correct": of_class & (preds == labels), "all": of_class}[focus]
    es = _build(known, "by-class", target_class=cls, focus=focus, holdout_fraction=0.3)
    assert set(es.indices) | set(es.holdout_indices) == set(np.flatnonzero(mask))
    assert (es.labels == cls).all() and all(labels[es.holdout_indices] == cls)
    if focus == "incorrect":
        assert (es.predictions != cls).all() and all(preds[es.holdout_indices] != cls)
    if focus == "correct":
        assert (es.predictions == cls).all()
    assert es.meta["target_class_name"] == "cat" and es.focus == focus


def test_candidates_from_one_batched_pass_equal_loop(known):
    model, split, preds, labels = known
    batched = predict(model, split, progress=False)
    assert np.array_equal(batched.preds, preds)
    assert np.array_equal(candidate_indices(batched, "misclassified", None, None), np.flatnonzero(preds != labels))


@pytest.mark.parametrize("count,size,sizing,fraction,expected", [
    (100, 10, "flexible", 0.5, (10, 50)), (100, 60, "flexible", 0.5, (50, 50)), (100, 60, "strict", 0.5, (60, 40)),
    (100, 100, "strict", 0.5, (100, 0)), (7, None, "flexible", 0.5, (4, 3)), (7, 10, "flexible", 0.0, (7, 0)),
    (1, 1, "flexible", 0.5, (1, 0)), (10, 3, "strict", 0.25, (3, 2)),
])
def test_split_sizes_rule(count, size, sizing, fraction, expected):
    assert split_sizes(count, size, sizing, fraction) == expected


def test_strict_too_few_is_error_and_flexible_takes_what_exists(fast):
    preds, labels = fast[2:4]
    wrong = int(np.sum((labels == 3) & (preds != labels)))
    with pytest.raises(DataError, match=f"only {wrong} images of class 3 cat") as err:
        _build(fast, "by-class", target_class=3, max_size=wrong + 1, sizing="strict")
    assert _one_line(err)
    es = _build(fast, "by-class", target_class=3, max_size=wrong + 1, sizing="flexible", holdout_fraction=0)
    assert len(es) == wrong and es.meta["requested_size"] == wrong + 1 and es.meta["actual_size"] == wrong


def test_strict_honours_size_by_shrinking_holdout(fast):
    preds, labels = fast[2:4]
    count = int(np.sum(preds != labels))
    es = _build(fast, max_size=count - 2, sizing="strict", holdout_fraction=0.5)
    assert len(es) == count - 2 and len(es.holdout_indices) == 2


def test_empty_edit_set_is_an_error(fast):
    preds, labels = fast[2:4]
    empty = next(c for c in range(10) if not np.any((labels == c) & (preds == c)))
    with pytest.raises(DataError, match="no edit images"):
        _build(fast, "by-class", target_class=empty, focus="correct")


def test_determinism_nesting_and_seed(fast):
    a = _build(fast, max_size=10, seed=0)
    b = _build(fast, max_size=10, seed=0)
    c = _build(fast, max_size=10, seed=1)
    big = _build(fast, max_size=20, seed=0)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.holdout_indices, b.holdout_indices)
    assert not np.array_equal(a.indices, c.indices)
    assert np.array_equal(big.indices[:10], a.indices)             # smaller sets are prefixes of larger ones
    assert np.array_equal(big.holdout_indices, a.holdout_indices)  # flexible: one held-out set for every size


def test_drawdown_is_the_rest(fast):
    split = fast[1]
    es = _build(fast, max_size=10)
    rest = es.drawdown_indices(len(split))
    parts = np.concatenate([es.indices, es.holdout_indices, rest])
    assert len(parts) == len(split) and set(parts) == set(range(len(split)))
    assert len(rest) == es.meta["drawdown_size"]
    with pytest.raises(DataError, match="another split"):
        es.drawdown_indices(5)


def test_zero_holdout_and_precomputed_predictions(known):
    model, split, _, _ = known
    pre = predict(model, split, progress=False)
    a = _build(known, max_size=15, holdout_fraction=0)
    b = build_editset(None, split, "misclassified", max_size=15, holdout_fraction=0, predictions=pre)
    assert len(a.holdout_indices) == 0 and np.array_equal(a.indices, b.indices)
    with pytest.raises(UsageError, match="whole split"):
        build_editset(None, split, "misclassified", predictions=predict(model, split, index=[0, 1], progress=False))


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "weird"}, "unknown edit-set kind"), ({"kind": "by-class"}, "0 airplane, 1 automobile"),
    ({"kind": "by-class", "target_class": 11}, "invalid target class 11"),
    ({"kind": "misclassified", "target_class": 3}, "only for by-class"),
    ({"kind": "by-class", "target_class": 3, "focus": "some"}, "unknown focus"),
    ({"kind": "misclassified", "max_size": 0}, "at least 1"), ({"kind": "misclassified", "holdout_fraction": 1.0},
                                                              r"\[0, 1\)"),
])
def test_bad_arguments(fast, kwargs, match):
    with pytest.raises(UsageError, match=match) as err:
        _build(fast, **kwargs)
    assert _one_line(err)


def test_parse_helpers():
    assert parse_class("cat") == 3 and parse_class(9) == 9 and parse_class("0") == 0
    assert parse_sweep_type("class_homogeneous_correct") == ("by-class", "correct")
    with pytest.raises(UsageError, match="misclassified, class_homogeneous_incorrect"):
        parse_sweep_type("random")
    assert set(SWEEP_TYPES) == {"misclassified", "class_homogeneous_incorrect", "class_homogeneous_correct"}


def test_earlier_toolkit_names(workdir):
    assert str(default_editset_path("misclassified")) == "data/edit_sets/misclassified_edit_dataset.pt"
    assert default_editset_path("by-class", 3).name == "class_3_cat_edit_dataset.pt"
    assert default_editset_path("by-class", 3, "correct").name == "class_3_cat_correct_edit_dataset.pt"
    assert default_editset_path("misclassified", dataset="synthetic").name == \
        "synthetic_misclassified_edit_dataset.pt"


def test_save_load_round_trip(fast, workdir):
    es = _build(fast, "by-class", target_class=3, focus="all", max_size=5)
    pt, manifest = save_editset(es)
    assert pt == default_editset_path("by-class", 3, "all") and manifest.name == "class_3_cat_all_edit_metadata.json"
    raw = torch.load(pt, weights_only=True)
    assert set(raw) == {"images", "labels", "indices", "holdout_indices", "predictions", "probs"}
    assert raw["images"].dtype == torch.float32 and raw["probs"].shape == (5, 10)
    back = load_editset(pt)
    assert torch.equal(back.images, es.images) and torch.equal(back.labels, es.labels)
    assert np.array_equal(back.indices, es.indices) and np.array_equal(back.holdout_indices, es.holdout_indices)
    assert torch.equal(back.predictions, es.predictions) and torch.equal(back.probs, es.probs)
    assert back.meta == es.meta and json.loads(manifest.read_text())["checkpoint_sha256"] is None
    check_against_split(back, fast[1])


def test_never_overwrites_without_force(fast, workdir):
    es = _build(fast, max_size=5)
    pt, manifest = save_editset(es)
    before = (pt.read_bytes(), pt.stat().st_mtime_ns, manifest.read_bytes())
    with pytest.raises(UsageError, match="--force") as err:
        save_editset(_build(fast, max_size=6))
    assert _one_line(err)
    assert before == (pt.read_bytes(), pt.stat().st_mtime_ns, manifest.read_bytes())
    save_editset(_build(fast, max_size=6), force=True)
    assert len(load_editset(pt)) == 6


@pytest.mark.parametrize("obj", ["dict", "data-targets", "tuple"])
def test_legacy_plain_files_load(tmp_path, caplog, obj):
    images, labels = torch.rand(4, 3, 64, 64), torch.tensor([3, 3, 3, 3])
    payload = {"dict": {"images": images, "labels": labels}, "data-targets": {"data": images, "targets": labels},
               "tuple": (images, labels)}[obj]
    path = tmp_path / "class_3_cat_edit_dataset.pt"
    torch.save(payload, path)
    with caplog.at_level(logging.WARNING):
        es = load_editset(path)
    assert "earlier-toolkit" in caplog.text
    assert es.legacy and es.meta["legacy"] is True and (es.kind, es.target_class, es.focus) == ("by-class", 3, "incorrect")
    assert torch.equal(es.images, images) and (es.indices == -1).all() and len(es.holdout_indices) == 0
    with pytest.raises(DataError, match="drawdown set is unknown"):
        es.drawdown_indices(100)
    torch.save({"images": images, "labels": labels}, tmp_path / "misclassified_edit_dataset.pt")
    assert load_editset(tmp_path / "misclassified_edit_dataset.pt").kind == "misclassified"


class NotATensor:
    pass


def _corrupt(pt, manifest, how):
    if how == "truncated":
        pt.write_bytes(pt.read_bytes()[:200])
    elif how == "pickled object":
        torch.save({"images": NotATensor()}, pt)
    elif how in ("labels out of range", "non-finite", "missing keys", "holdout overlap"):
        raw = torch.load(pt, weights_only=True)
        if how == "labels out of range":
            raw["labels"][0] = 11
        elif how == "non-finite":
            raw["images"][0, 0, 0, 0] = float("nan")
        elif how == "missing keys":
            del raw["probs"]
        else:
            raw["holdout_indices"][0] = raw["indices"][0]
        torch.save(raw, pt)
    elif how == "manifest with other indices":
        meta = json.loads(manifest.read_text())
        meta["indices"][0] += 1
        manifest.write_text(json.dumps(meta))
    elif how == "manifest missing":
        manifest.unlink()
    elif how == "manifest not json":
        manifest.write_text("{not json")
    elif how == "wrong shape":
        raw = torch.load(pt, weights_only=True)
        raw["images"] = raw["images"][:, :, :32, :32]
        torch.save(raw, pt)


@pytest.mark.parametrize("how,match", [
    ("truncated", "cannot read"), ("pickled object", "not a tensor-only"), ("labels out of range", "outside 0..9"),
    ("non-finite", "non-finite"), ("missing keys", "missing probs"), ("holdout overlap", "both edited and held out"),
    ("manifest with other indices", "indices does not match"), ("manifest missing", "manifest .* is missing"),
    ("manifest not json", "not valid JSON"), ("wrong shape", r"expected \(n, 3, 64, 64\)"),
])
def test_corrupt_files_give_one_line_errors(fast, workdir, how, match):
    pt, manifest = save_editset(_build(fast, max_size=5))
    _corrupt(pt, manifest, how)
    with pytest.raises(DataError, match=match) as err:
        load_editset(pt)
    assert _one_line(err)


def test_missing_file_and_manifest_path(workdir):
    with pytest.raises(DataError, match="edit set not found.*editset_generator.py"):
        load_editset("data/edit_sets/nothing_edit_dataset.pt")
    with pytest.raises(DataError, match="not its manifest"):
        load_editset("data/edit_sets/x_edit_metadata.json")


def test_check_against_split_detects_other_data(fast, cifar_train):
    es = _build(fast, max_size=5)
    with pytest.raises(DataError, match="not cifar10-folder/train"):
        check_against_split(es, cifar_train)


def test_contact_sheet_png(tmp_path):
    import matplotlib.image

    images = torch.rand(10, 3, 64, 64)
    path = contact_sheet(images, [f"cat\nbase: dog {i}" for i in range(10)], tmp_path / "sheet.png", ncols=8)
    png = matplotlib.image.imread(path)
    assert png.shape[:2] == (2 * 180, 8 * 150) and png[..., :3].std() > 0
