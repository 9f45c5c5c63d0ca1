"""The bad-input battery: unreadable checkpoints, edit sets and data folders, and bad flags, through the real
scripts (eval.py, run_repair.py, editset_generator.py, train.py).

Every case must give exactly one ``error: ...`` line on stderr (other stderr lines may only be log warnings;
argparse's own refusals print their usage line first), a non-zero exit, no traceback, and change no file:
the working folder, the bad inputs and the dataset are hashed before and after.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import editset_generator
import eval as eval_script
import run_repair
import train as train_script
from alexnet_repair.editsets import build_editset, save_editset
from alexnet_repair.model import save_checkpoint, small_alexnet

SCRIPTS = {"eval": eval_script.main, "run_repair": run_repair.main, "editset_generator": editset_generator.main,
           "train": train_script.main}


class _Payload:
    """Unpickling this runs ``os.system``: a loader that executes pickled code creates the file ``PWNED``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


# ---------------------------------------------------------------- the bad files, made once

def _write_bad_files(folder: Path, good_checkpoint: Path, good_editset: Path) -> None:
    """Files that are not what a --weights / --edit-set flag expects (names are the case ids)."""
    data = good_checkpoint.read_bytes()
    rng = np.random.default_rng(0)
    (folder / "text.pth").write_text("my notes about the model\nline two\n")
    (folder / "random.pth").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    (folder / "truncated_head.pth").write_bytes(data[:64])
    (folder / "empty.pth").write_bytes(b"")
    (folder / "one_byte.pth").write_bytes(b"\x80")
    (folder / "zip_junk.pth").write_bytes(b"PK\x03\x04" + rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
    (folder / "folder.pth").mkdir()
    (folder / "folder.pth" / "inside").write_text("x")
    (folder / "code.pth").write_bytes(pickle.dumps({"w": _Payload(folder / "PWNED")}))
    (folder / "list.pth").write_bytes(_torch_bytes([torch.zeros(3)]))
    (folder / "wrong_shape.pth").write_bytes(_torch_bytes({"classifier.6.weight": torch.zeros(4, 4)}))
    (folder / "nan.pth").write_bytes(_torch_bytes({k: v.fill_(float("nan")) if k.endswith("bias") else v
                                                  for k, v in torch.load(good_checkpoint).items()}))
    # the other kind of file: an edit set as --weights, a checkpoint as --edit-set
    shutil.copy(good_editset, folder / "an_editset.pth")
    shutil.copy(good_checkpoint, folder / "a_checkpoint.pt")
    # edit sets whose .pt is fine but whose manifest is not
    for case, manifest in (("manifest_text", "not json at all"), ("manifest_list", "[1, 2, 3]"),
                           ("manifest_folder", None), ("manifest_binary", b"\xff\xfe\x00garbage")):
        shutil.copy(good_editset, folder / f"{case}_edit_dataset.pt")
        target = folder / f"{case}_edit_metadata.json"
        if manifest is None:
            target.mkdir()
        elif isinstance(manifest, bytes):
            target.write_bytes(manifest)
        else:
            target.write_text(manifest)
    torch.save({"images": torch.zeros(2, 3, 64, 64), "labels": torch.tensor([0.5, 1.5])}, folder / "float_labels.pt")
    torch.save((torch.zeros(0, 3, 64, 64), torch.zeros(0, dtype=torch.long)), folder / "no_images.pt")


def _torch_bytes(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


CHECKPOINT_CASES = ["text.pth", "random.pth", "truncated.pth", "truncated_head.pth", "empty.pth", "one_byte.pth",
                    "zip_junk.pth", "folder.pth", "code.pth", "list.pth", "wrong_shape.pth", "nan.pth",
                    "an_editset.pth", "missing.pth"]
EDITSET_CASES = ["text.pth", "random.pth", "truncated.pth", "empty.pth", "one_byte.pth", "zip_junk.pth",
                 "folder.pth", "code.pth", "list.pth", "a_checkpoint.pt", "float_labels.pt", "missing.pt",
                 "manifest_text_edit_dataset.pt", "manifest_list_edit_dataset.pt",
                 "manifest_folder_edit_dataset.pt", "manifest_binary_edit_dataset.pt"]


def _cifar_entry(images: np.ndarray, labels, keys=("data", "labels")) -> dict:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    return {keys[0]: rows, keys[1]: list(labels), "batch_label": "bad"}


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)


DATA_CASES = ["no_folder", "root_is_a_file", "text_batch", "empty_batch", "random_batch", "truncated_batch",
              "batch_is_a_folder", "cifar100_batch", "cifar100_meta", "no_labels", "wrong_rows", "labels_11",
              "labels_float", "a_list", "code_batch", "no_meta", "missing_batch"]


def _make_data_case(root: Path, case: str, good: Path) -> None:
    """``root``/cifar-10-batches-py: a copy of the good tiny CIFAR folder with one thing wrong."""
    if case == "no_folder":
        root.mkdir()
        return
    if case == "root_is_a_file":
        root.write_text("not a folder")
        return
    folder = root / "cifar-10-batches-py"
    shutil.copytree(good / "cifar-10-batches-py", folder)
    test = folder / "test_batch"
    with open(test, "rb") as handle:
        entry = pickle.load(handle, encoding="latin1")
    images = entry["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    if case == "text_batch":
        test.write_text("label,pixels\n1,2,3\n")
    elif case == "empty_batch":
        test.write_bytes(b"")
    elif case == "random_batch":
        test.write_bytes(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    elif case == "truncated_batch":
        test.write_bytes(test.read_bytes()[:1000])
    elif case == "batch_is_a_folder":
        test.unlink()
        test.mkdir()
    elif case == "cifar100_batch":
        _dump(test, {"data": entry["data"], "fine_labels": entry["labels"], "coarse_labels": entry["labels"]})
    elif case == "cifar100_meta":
        _dump(folder / "batches.meta", {"fine_label_names": [str(i) for i in range(100)]})
    elif case == "no_labels":
        _dump(test, {b"data": entry["data"], b"targets": entry["labels"]})
    elif case == "wrong_rows":
        _dump(test, {"data": entry["data"][:, :1024], "labels": entry["labels"]})
    elif case == "labels_11":
        _dump(test, _cifar_entry(images, [11] * len(images)))
    elif case == "labels_float":
        _dump(test, _cifar_entry(images, [0.5] * len(images)))
    elif case == "a_list":
        _dump(test, [entry["data"], entry["labels"]])
    elif case == "code_batch":
        _dump(test, {"data": _Payload(root / "PWNED"), "labels": entry["labels"]})
    elif case == "no_meta":
        (folder / "batches.meta").unlink()
    elif case == "missing_batch":
        (folder / "data_batch_3").unlink()
        test.unlink()


@pytest.fixture(scope="module")
def bad(tmp_path_factory, fitted_state, cifar_test, cifar_dir):
    """A folder of bad inputs, a good checkpoint and a good edit set (built on the tiny CIFAR test split)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    model = small_alexnet(scale=16, seed=0)
    model.load_state_dict(fitted_state)
    good = save_checkpoint(model.eval(), root / "good.pth")
    editset = build_editset(model, cifar_test, "misclassified", max_size=6, progress=False)
    good_es, _ = save_editset(editset, root / "good" / "misclassified_edit_dataset.pt")
    files = root / "files"
    files.mkdir()
    _write_bad_files(files, good, good_es)
    data = root / "data"
    data.mkdir()
    for case in DATA_CASES:
        _make_data_case(data / case, case, cifar_dir)
    return {"root": root, "good": good, "editset": good_es, "files": files, "data": data, "cifar": cifar_dir}


def _snapshot(*roots: Path) -> dict:
    """sha256 of every file and the set of folders under ``roots``: what "no file changed" compares."""
    out = {}
    for root in roots:
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            out[dirpath] = "folder"
            for name in filenames:
                path = Path(dirpath) / name
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _run_refused(script: str, argv: list[str], capsys, watched: list[Path]) -> str:
    """Run ``script`` on ``argv``; assert the refusal contract and return the error line."""
    before = _snapshot(*watched)
    try:
        code = SCRIPTS[script](argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    captured = capsys.readouterr()
    err_lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code not in (0, None), f"{script} {argv} succeeded:\n{captured.out}\n{captured.err}"
    assert "Traceback" not in captured.err and "Traceback" not in captured.out, captured.err
    errors = [line for line in err_lines if line.startswith("error: ") or ": error: " in line]
    assert len(errors) == 1, f"expected one error line, got:\n{captured.err}"
    others = [line for line in err_lines if line is not errors[0]]
    allowed = ["WARNING ", "repairing ", "fine-tuning "]  # log warnings; run_repair's one-line banner
    if ": error: " in errors[0]:
        allowed += ["usage:", " "]  # argparse prints its usage (wrapped) before the error
    assert all(line.startswith(tuple(allowed)) for line in others), f"stray stderr lines:\n{captured.err}"
    assert _snapshot(*watched) == before, f"{script} {argv} changed files"
    return errors[0]


@pytest.fixture
def watched(workdir, bad):
    return [workdir, bad["root"], bad["cifar"]]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
@pytest.mark.parametrize("script", ["eval", "run_repair", "editset_generator", "show"])
def test_unreadable_checkpoints(script, case, bad, workdir, watched, capsys):
    weights = str(bad["files"] / case)
    data = ["--data-dir", str(bad["cifar"]), "--no-download", "--quiet"]
    argv = {"eval": ["--weights", weights] + data,
            "run_repair": ["--edit-set", str(bad["editset"]), "--weights", weights, "--no-eval", "--quiet",
                           "--threads", "1"],
            "editset_generator": ["misclassified", "--weights", weights, "--output", "es/x_edit_dataset.pt"] + data,
            "show": ["show", str(bad["editset"]), "--weights", weights, "--output", "sheet.png"]}[script]
    line = _run_refused("editset_generator" if script == "show" else script, argv, capsys, watched)
    assert case in line
    assert not (bad["files"] / "PWNED").exists()


@pytest.mark.parametrize("case", EDITSET_CASES)
@pytest.mark.parametrize("script", ["eval", "run_repair", "show"])
def test_unreadable_edit_sets(script, case, bad, workdir, watched, capsys):
    path = str(bad["files"] / case)
    argv = {"eval": ["--weights", str(bad["good"]), "--edit-set", path, "--data-dir", str(bad["cifar"]),
                     "--no-download", "--quiet"],
            "run_repair": ["--edit-set", path, "--weights", str(bad["good"]), "--no-eval", "--quiet", "--threads", "1"],
            "show": ["show", path, "--output", "sheet.png"]}[script]
    line = _run_refused("editset_generator" if script == "show" else script, argv, capsys, watched)
    assert case.removesuffix("_edit_dataset.pt") in line
    assert not (bad["files"] / "PWNED").exists()


@pytest.mark.parametrize("case", DATA_CASES)
@pytest.mark.parametrize("script", ["eval", "editset_generator", "train"])
def test_unreadable_data_folders(script, case, bad, workdir, watched, capsys):
    data = ["--data-dir", str(bad["data"] / case), "--no-download", "--quiet"]
    argv = {"eval": ["--weights", str(bad["good"])] + data,
            "editset_generator": ["misclassified", "--weights", str(bad["good"]), "--output", "x_edit_dataset.pt"]
            + data,
            "train": ["--output", "m.pth", "--epochs", "1", "--width-scale", "16", "--limit", "4"] + data}[script]
    line = _run_refused(script, argv, capsys, watched)
    assert str(bad["data"] / case) in line or case == "no_folder"
    assert not (bad["data"] / case / "PWNED").exists()
    if case.startswith("cifar100"):
        assert "CIFAR-100" in line


FLAG_CASES = [
    ("eval", ["--batch-size", "0"], "--batch-size"),
    ("eval", ["--margin", "1"], "--margin needs --edit-set"),
    ("eval", ["--split", "validation"], "invalid choice"),
    ("eval", ["--dataset", "mnist"], "invalid choice"),
    ("eval", ["--batch-size", "many"], "invalid int"),
    ("run_repair", ["--param-bound", "-1"], "--param-bound"),
    ("run_repair", ["--margin", "-2"], "--margin"),
    ("run_repair", ["--layer", "features.0"], "unknown layer"),
    ("run_repair", ["--rows", "abc"], "a:b"),
    ("run_repair", ["--rows", "5:2"], "no valid row"),
    ("run_repair", ["--output", "artifacts"], "folder"),
    ("run_repair", [], "give a mode"),
    ("run_repair", ["by-class", "--target-class", "11"], "0 airplane"),
    ("editset_generator", ["misclassified", "--max-size", "0"], "--max-size"),
    ("editset_generator", ["misclassified", "--holdout-fraction", "1.5"], "--holdout-fraction"),
    ("editset_generator", ["by-class"], "--target-class"),
    ("editset_generator", ["by-class", "--target-class", "zebra"], "zebra"),
    ("editset_generator", ["misclassified", "--output", "es.txt"], ".pt"),
    ("editset_generator", ["misclassified", "--output", "folder.pt"], "folder"),
    ("editset_generator", ["misclassified", "--weights", "nothing.pth"], "not found"),
    ("editset_generator", ["show", "nothing.pt"], "not found"),
    ("editset_generator", ["show", "GOOD_EDITSET", "--max-images", "0"], "--max-images"),
    ("editset_generator", ["show", "GOOD_EDITSET", "--output", "artifacts"], "folder"),
    ("train", ["--epochs", "0"], "--epochs"),
    ("train", ["--lr", "0"], "--lr"),
    ("train", ["--width-scale", "0"], "--width-scale"),
    ("train", ["--limit", "0"], "--limit"),
    ("train", ["--output", "artifacts"], "folder"),
    ("train", ["--output", "artifacts/existing.pth"], "--force"),
]


@pytest.mark.parametrize("script, flags, message", FLAG_CASES,
                         ids=[f"{s}:{' '.join(f)}" for s, f, _ in FLAG_CASES])
def test_bad_flags(script, flags, message, bad, workdir, watched, capsys):
    (workdir / "artifacts" / "existing.pth").write_bytes(b"an earlier model")
    (workdir / "folder.pt").mkdir()
    flags = [str(bad["editset"]) if f == "GOOD_EDITSET" else f for f in flags]
    data = ["--data-dir", str(bad["cifar"]), "--no-download"]
    if script == "eval":
        argv = ["--weights", str(bad["good"]), "--quiet"] + data + flags
    elif script == "run_repair":
        edit = [] if ("by-class" in flags or not flags) else ["--edit-set", str(bad["editset"])]
        argv = flags + edit + ["--weights", str(bad["good"]), "--no-eval", "--quiet", "--threads", "1"]
        if "--margin" not in flags:
            argv += ["--margin", "0.5"]  # so that --output is reached: the repair itself succeeds
    elif script == "editset_generator":
        base = ["--weights", str(bad["good"]), "--quiet"] + data if flags[0] != "show" else []
        argv = flags + ([] if "--weights" in flags else base)
    else:
        argv = ["--output", "m.pth", "--quiet", "--width-scale", "16", "--limit", "4"] + data + flags
    line = _run_refused(script, argv, capsys, watched)
    assert message in line
