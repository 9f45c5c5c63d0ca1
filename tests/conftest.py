"""Shared fixtures: a tiny CIFAR-format dataset on disk, tiny AlexNets and their checkpoints, a scratch workdir.

- ``cifar_dir``        a folder holding ``cifar-10-batches-py`` in the real pickle layout (5 x 20 train images,
                       100 test images, 10 per class), read by the CIFAR-format folder reader ("cifar10-folder").
- ``cifar_test`` / ``cifar_train``  those splits loaded with ``data.load_split``.
- ``tiny_model``       ``small_alexnet(scale=16)`` with seed 0 (untrained; mostly predicts one class).
- ``tiny_checkpoint``  that model saved to a file.
- ``fitted_model``     the tiny model with its classifier set in closed form (nearest class centroid) on
                       ``cifar_train``: on ``cifar_test`` it gets about a third right, with right and wrong images
                       in most classes, so every edit-set kind is non-trivial. Compare against ``predict_each``.
- ``fitted_checkpoint`` that model saved to a file; ``fitted_state`` its state dict (session-scoped, do not mutate).
- ``predict_each``     ``predict_each(model, split) -> np.ndarray``: predictions by an independent per-image loop,
                       to check vectorised code against.
- ``fitted_test_preds`` ``predict_each(fitted_model, cifar_test)``, computed once per session.
- ``workdir``          chdir into an empty folder with data/, data/edit_sets/, artifacts/ and results/.
- ``edit_and_preserve`` (edit set, preserve set) of ``fitted_model``: 10 misclassified test images, 40 train images.
- ``editset_file``     10 test images ``editset_model`` (default ``fitted_model``) misclassifies, saved as the
                       ``misclassified`` edit set in ``workdir``.
- ``quiet_state`` / ``quiet_checkpoint``  the fitted model with logits scaled by 0.01 (same predictions; repairs
                       verify), as a state dict and as a checkpoint file (both session-scoped: do not mutate).
- ``preserve_sweep``   a real 8-run grid sweep of ``quiet_checkpoint`` with ``--preserves 0 20`` (aprnn and ft, models
                       kept), once per session: ``Namespace(root, grid, csv)``, ``grid`` its flags without
                       ``--preserves`` and ``--output-file`` (read its files, do not write into ``root``).
- ``sweep_dir``        a real 12-run grid sweep of ``quiet_checkpoint`` (two types, classes 3 and 5, sizes 2 and 5,
                       bound 20, margins 0.05 and 0.1) with its run records, once per session: the folder holding
                       results/experiment.csv (do not change it; analysis/test_grid.py analyses it into
                       results/analysis there).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_repair.data import CLASS_NAMES, load_split, synthetic_split
from alexnet_repair.editsets import build_editset, draw_preserve_set, save_editset
from alexnet_repair.model import save_checkpoint, small_alexnet

# the root scripts (editset_generator.py, eval.py, ...) are imported by tests as modules (`import editset_generator`)
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TRAIN_PER_BATCH = 20
TEST_SIZE = 100


def _write_batch(path, images: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    """One CIFAR-10 python batch: uint8 (n, 3072) rows of R, G, B planes, labels as a list (str keys once loaded)."""
    rows = images.permute(0, 3, 1, 2).reshape(len(images), 3072).numpy().astype(np.uint8)
    entry = {"batch_label": name, "labels": [int(v) for v in labels], "data": rows,
             "filenames": [f"img_{i:05d}.png" for i in range(len(labels))]}
    with open(path, "wb") as handle:
        pickle.dump(entry, handle, protocol=2)


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory):
    """Root folder to pass as data_dir / --data-dir (holds cifar-10-batches-py)."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    train = synthetic_split("train", seed=0, size=5 * TRAIN_PER_BATCH)
    test = synthetic_split("test", seed=0, size=TEST_SIZE)
    for b in range(5):
        part = slice(b * TRAIN_PER_BATCH, (b + 1) * TRAIN_PER_BATCH)
        _write_batch(folder / f"data_batch_{b + 1}", train.images[part], train.labels[part],
                     f"training batch {b + 1} of 5")
    _write_batch(folder / "test_batch", test.images, test.labels, "testing batch 1 of 1")
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"num_cases_per_batch": TRAIN_PER_BATCH, "label_names": list(CLASS_NAMES), "num_vis": 3072},
                    handle, protocol=2)
    return root


@pytest.fixture(scope="session")
def cifar_test(cifar_dir):
    return load_split("cifar10", "test", cifar_dir, download=False)


@pytest.fixture(scope="session")
def cifar_train(cifar_dir):
    return load_split("cifar10", "train", cifar_dir, download=False)


@pytest.fixture
def tiny_model():
    return small_alexnet(scale=16, seed=0).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    return save_checkpoint(tiny_model, tmp_path / "tiny.pth")


@pytest.fixture(scope="session")
def fitted_state(cifar_train):
    """tiny_model's convolutions with a classifier set in closed form (no training loop: deterministic, ~1 s).

    classifier.1: a fixed random projection of the standardised conv features, +3 so (almost) every unit is active;
    classifier.4: identity; classifier.6: nearest class centroid on those features, measured on cifar_train,
    logit_c = 0.1 * (2 (h - m) . d_c - |d_c|^2) with d_c = mu_c - m (centred, so float32 keeps the differences).
    Logits are O(10) and the smallest top-2 gap on cifar_test is ~0.01, far above float noise, so batched and
    per-image predictions agree exactly.
    """
    model = small_alexnet(scale=16, seed=0).eval()
    fc1, fc2, fc3 = model.classifier[1], model.classifier[4], model.classifier[6]
    with torch.no_grad():
        emb = model.embed(cifar_train.inputs())                                     # (n, 36 * c5)
        mu, sd = emb.mean(0), emb.std(0) + 1e-6
        proj = torch.randn(fc1.out_features, emb.shape[1], generator=torch.Generator().manual_seed(0))
        proj /= emb.shape[1] ** 0.5
        fc1.weight.copy_(proj / sd)
        fc1.bias.copy_(3.0 - proj @ (mu / sd))
        fc2.weight.copy_(torch.eye(fc2.out_features))
        fc2.bias.zero_()
        feats = model.classifier[:6](emb)                                           # (n, hidden), mostly > 0
        centre = feats.mean(0)
        diffs = torch.stack([feats[cifar_train.labels == c].mean(0) for c in range(len(CLASS_NAMES))]) - centre
        fc3.weight.copy_(0.2 * diffs)
        fc3.bias.copy_(-0.1 * (2 * (centre * diffs).sum(1) + (diffs * diffs).sum(1)))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def fitted_model(fitted_state):
    model = small_alexnet(scale=16, seed=0)
    model.load_state_dict(fitted_state)
    return model.eval()


@pytest.fixture
def fitted_checkpoint(tmp_path, fitted_model):
    return save_checkpoint(fitted_model, tmp_path / "fitted.pth")


@torch.no_grad()
def _predict_each(model, split) -> np.ndarray:
    model.eval()
    inputs = split.inputs()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # single-image passes: thread hand-offs cost 20x the work on a busy 2-core box
    try:
        return np.array([int(model(inputs[i:i + 1]).argmax(1)) for i in range(len(split))], dtype=np.int64)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def predict_each():
    return _predict_each


@pytest.fixture(scope="session")
def fitted_test_preds(fitted_state, cifar_test) -> np.ndarray:
    """fitted_model's predictions on cifar_test (100,), from the per-image loop (computed once per session)."""
    model = small_alexnet(scale=16, seed=0)
    model.load_state_dict(fitted_state)
    return _predict_each(model, cifar_test)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for sub in ("data/edit_sets", "artifacts", "results"):
        (tmp_path / sub).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def quiet_state(fitted_state):
    """``fitted_state`` with the logits scaled by 0.01 (classifier.6 weight and bias; the same predictions).

    The repair LP keeps an absolute 1e-4 of margin headroom for float32 rounding; the fitted model's O(10) logits
    from O(3) activations round by more than that, so its repairs fail verification by ~1e-4. Smaller logits
    keep the sweep tests about the sweep.
    """
    state = {k: v.clone() for k, v in fitted_state.items()}
    state["classifier.6.weight"].mul_(0.01)
    state["classifier.6.bias"].mul_(0.01)
    return state


@pytest.fixture(scope="session")
def quiet_checkpoint(tmp_path_factory, quiet_state):
    """``quiet_state`` saved as a checkpoint, once per session (read it, do not overwrite it)."""
    model = small_alexnet(scale=16, seed=0)
    model.load_state_dict(quiet_state)
    return save_checkpoint(model.eval(), tmp_path_factory.mktemp("quiet") / "quiet.pth")


# ---------------------------------------------------------------- solver choice: HiGHS unless marked gurobi

def _gurobi_unusable() -> str | None:
    """Why Gurobi cannot run here (gurobipy missing, too old, or no usable licence), or None."""
    from alexnet_repair.solvers import available_backends

    found = available_backends()["gurobi"]
    return found.removeprefix("unavailable: ") if found.startswith("unavailable") else None


def pytest_collection_modifyitems(config, items):
    """Skip every ``gurobi``-marked test, in one place, when gurobipy or its licence cannot be used."""
    marked = [item for item in items if item.get_closest_marker("gurobi")]
    if not marked:
        return
    reason = _gurobi_unusable()
    if reason:
        skip = pytest.mark.skip(reason=f"gurobi: {reason}")
        for item in marked:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _highs_unless_marked_gurobi(request, monkeypatch):
    """Unmarked tests solve with HiGHS whatever licence the machine has: ``--solver auto`` never picks Gurobi
    (in this process: ``fits_licence`` says no; in subprocesses and spawned sweep workers: GRB_LICENSE_FILE points
    at no file, so their licence probe fails). The licence probe cache is private to the test. Tests marked
    ``gurobi`` see the real machine."""
    if request.node.get_closest_marker("gurobi"):
        return
    from alexnet_repair.solvers import gurobi

    monkeypatch.setattr(gurobi, "fits_licence", lambda problem: (False, "tests run HiGHS unless marked gurobi"))
    monkeypatch.setattr(gurobi, "_licence_cache", {})
    monkeypatch.setenv("GRB_LICENSE_FILE", str(Path(request.config.rootpath) / "no-gurobi-licence-in-tests.lic"))


# ---------------------------------------------------------------- a sweep with preserve sets

@pytest.fixture(scope="session")
def preserve_sweep(tmp_path_factory, cifar_dir, quiet_checkpoint):
    """See the module docstring: the sweep experiments/test_preserve.py and analysis/test_preserve.py share."""
    from argparse import Namespace
    from contextlib import chdir

    import experiment_runner
    from sweeptools import common

    root = tmp_path_factory.mktemp("preserve_sweep")
    grid = [*common(cifar_dir, quiet_checkpoint), "--repair-set-sizes", "3", "--repair-set-types", "misclassified",
            "class_homogeneous_incorrect", "--target-classes", "3", "--param-bound", "20", "--margin", "0.05",
            "--methods", "aprnn", "ft", "--keep-models"]
    with chdir(root):
        assert experiment_runner.main([*grid, "--preserves", "0", "20", "--output-file", "results/p.csv"]) == 0
    return Namespace(root=root, grid=grid, csv=root / "results/p.csv")


# ---------------------------------------------------------------- a plain grid sweep (the analysis tests)

@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory, cifar_dir, quiet_checkpoint):
    """See the module docstring: the sweep analysis/test_grid.py and analysis/test_report.py read."""
    from contextlib import chdir

    import experiment_runner
    from sweeptools import common

    root = tmp_path_factory.mktemp("analysis")
    args = [*common(cifar_dir, quiet_checkpoint), "--repair-set-sizes", "2", "5", "--repair-set-types",
            "misclassified", "class_homogeneous_incorrect", "--target-classes", "3", "5", "--param-bound", "20",
            "--margins", "0.05", "0.1", "--output-file", "results/experiment.csv"]
    with chdir(root):
        assert experiment_runner.main(args) == 0
    return root


@pytest.fixture
def editset_model(fitted_model):
    """The model whose mistakes ``editset_file`` holds (a test module may override it)."""
    return fitted_model


@pytest.fixture
def editset_file(workdir, editset_model, cifar_test):
    """10 test images ``editset_model`` misclassifies, saved where run_repair.py's ``misclassified`` mode looks."""
    es = build_editset(editset_model, cifar_test, "misclassified", max_size=10, progress=False)
    pt, _ = save_editset(es, workdir / "data/edit_sets/misclassified_edit_dataset.pt")
    return pt


@pytest.fixture
def edit_and_preserve(fitted_model, cifar_test, cifar_train):
    """10 misclassified test images of ``fitted_model`` (an EditSet) and 40 train images it gets right with margin 0.1
    (a PreserveSet)."""
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=10, progress=False)
    preserve = draw_preserve_set(fitted_model, cifar_train, 40, margin=0.1, seed=0)
    return es, preserve
