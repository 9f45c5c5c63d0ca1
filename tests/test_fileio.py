"""Atomic writes under failure: a crash between the temporary write and the rename leaves the old file intact
and no temporary file behind; unwritable paths are one-line errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from alexnet_repair.editsets import build_editset, load_editset, save_editset
from alexnet_repair.errors import UsageError
from alexnet_repair.fileio import atomic_write_bytes, atomic_write_text, write_json
from alexnet_repair.model import load_checkpoint, save_checkpoint, small_alexnet


class Crash(Exception):
    """Stands for anything that stops a process between write and rename (a bug, a signal turned exception)."""


def _fail_replace(monkeypatch, error):
    calls = []

    def replace(src, dst):
        calls.append((str(src), str(dst)))
        assert os.path.exists(src)  # the temporary file was fully written before the rename
        raise error

    monkeypatch.setattr(os, "replace", replace)
    return calls


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


WRITERS = {
    "bytes": lambda path: atomic_write_bytes(path, b"new contents"),
    "text": lambda path: atomic_write_text(path, "new contents\n"),
    "json": lambda path: write_json(path, {"new": [1, 2, float("nan")]}),
    "checkpoint": lambda path: save_checkpoint(small_alexnet(scale=16, seed=1), path),
}


@pytest.mark.parametrize("error, raised", [(Crash("killed mid-write"), Crash), (OSError(28, "No space left on device"),
                                                                              UsageError)])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch, writer, error, raised):
    path = tmp_path / "out" / "target.bin"
    path.parent.mkdir()
    path.write_bytes(b"old contents")
    calls = _fail_replace(monkeypatch, error)
    with pytest.raises(raised) as caught:
        WRITERS[writer](path)
    assert calls and calls[0][1] == str(path)
    assert path.read_bytes() == b"old contents"
    assert _leftovers(path.parent) == [] and sorted(os.listdir(path.parent)) == ["target.bin"]
    if raised is UsageError:  # an OSError is a one-line user-facing error naming the file
        assert str(path) in str(caught.value) and "No space left" in str(caught.value)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch, writer):
    path = tmp_path / "target.bin"
    _fail_replace(monkeypatch, Crash("killed"))
    with pytest.raises(Crash):
        WRITERS[writer](path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failing", [".pt", ".json"])
@pytest.mark.parametrize("error", [Crash("killed"), OSError(13, "Permission denied")])
def test_save_editset_failure_keeps_the_old_pair(workdir, monkeypatch, fitted_model, cifar_test, failing, error):
    """The edit set's .pt and its manifest are written together: when either rename fails (the .pt is renamed
    first), both files keep their old contents and the old set still loads."""
    pt, manifest = save_editset(build_editset(fitted_model, cifar_test, "misclassified", max_size=4, progress=False),
                                workdir / "sets" / "x_edit_dataset.pt")
    old = (pt.read_bytes(), manifest.read_bytes())
    bigger = build_editset(fitted_model, cifar_test, "misclassified", max_size=6, progress=False)
    real_replace, renamed = os.replace, []

    def replace(src, dst):
        if str(dst).endswith(failing) and not str(src).endswith(".bak.tmp"):
            raise error
        renamed.append(str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(UsageError if isinstance(error, OSError) else Crash):
        save_editset(bigger, pt, force=True)
    if failing == ".json":
        assert renamed[0] == str(pt)  # the new .pt was in place, and was put back
    assert (pt.read_bytes(), manifest.read_bytes()) == old and _leftovers(pt.parent) == []
    assert sorted(os.listdir(pt.parent)) == sorted([pt.name, manifest.name])
    monkeypatch.undo()
    assert len(load_editset(pt)) == 4
    save_editset(bigger, pt, force=True)
    assert len(load_editset(pt)) == 6 and _leftovers(pt.parent) == []


def test_a_new_pair_is_not_half_written(workdir, monkeypatch, fitted_model, cifar_test):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=4, progress=False)
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(Crash("killed"))
                        if str(dst).endswith(".json") else real_replace(src, dst))
    with pytest.raises(Crash):
        save_editset(es, workdir / "sets" / "y_edit_dataset.pt")
    assert os.listdir(workdir / "sets") == []


def test_a_checkpoint_failing_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    """save_checkpoint streams into the temporary file: a disk filling up half-way loses nothing either."""
    path = tmp_path / "model.pth"
    path.write_bytes(b"old contents")

    def half_then_full(obj, handle):
        handle.write(b"x" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_full)
    with pytest.raises(UsageError, match="No space left"):
        save_checkpoint(small_alexnet(scale=16, seed=0), path)
    assert path.read_bytes() == b"old contents" and _leftovers(tmp_path) == []


def test_a_successful_write_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"old")
    save_checkpoint(small_alexnet(scale=16, seed=0), path)
    assert load_checkpoint(path).hidden == 256 and _leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    write_json(tmp_path / "r.json", {"x": torch.tensor(1.5)})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": 1.5}


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_unwritable_paths_are_one_line_errors(tmp_path, where):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    path = tmp_path / "folder" if where == "a folder" else tmp_path / "file" / "model.pth"
    with pytest.raises(UsageError) as caught:
        save_checkpoint(small_alexnet(scale=16, seed=0), path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert (tmp_path / "file").read_text() == "x" and os.listdir(tmp_path / "folder") == []
