"""convert_model.py onnx without --dataset: the export is checked on the dataset the checkpoint's records name."""

from __future__ import annotations

import json
import socket

import pytest

import convert_model
from alexnet_repair.data import synthetic_split
from alexnet_repair.fileio import write_json
from alexnet_repair.interop import onnx_export as ox
from alexnet_repair.interop.commands import choose_dataset
from alexnet_repair.model import save_checkpoint, small_alexnet
from alexnet_repair.training import TrainConfig, train_base_model


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def synthetic_base(workdir):
    """A base model trained (briefly) on the synthetic set by the toolkit's trainer: checkpoint + its sidecar."""
    path = workdir / "artifacts" / "alexnet_base.pth"
    record = train_base_model(path, synthetic_split("train", size=20), synthetic_split("test", size=20),
                              TrainConfig(epochs=1, batch_size=10), width_scale=16, progress=False)
    assert record["dataset"] == "synthetic" and path.with_suffix(".json").is_file()
    return path


def test_onnx_uses_the_dataset_of_the_checkpoint_sidecar_offline(synthetic_base, offline, capsys):
    assert convert_model.main(["onnx", str(synthetic_base), "--check-images", "16"]) == 0
    out = capsys.readouterr().out
    sidecar = synthetic_base.with_suffix(".json")
    assert f"dataset          synthetic (named by the checkpoint's sidecar {sidecar})" in out
    assert "16 synthetic/test images" in out
    check = json.loads(ox.sidecar_path(synthetic_base.with_suffix(".onnx")).read_text())["check"]
    assert check["dataset"] == "synthetic" and check["images"] == 16
    assert check["dataset_from"] == f"named by the checkpoint's sidecar {sidecar}"


def test_explicit_dataset_wins_over_the_sidecar(synthetic_base, cifar_dir, capsys):
    out = synthetic_base.with_name("explicit.onnx")
    assert convert_model.main(["onnx", str(synthetic_base), "--output", str(out), "--dataset", "cifar10",
                               "--data-dir", str(cifar_dir), "--no-download", "--check-images", "8"]) == 0
    assert "dataset          cifar10-folder (given with --dataset)" in capsys.readouterr().out
    check = json.loads(ox.sidecar_path(out).read_text())["check"]
    assert check["dataset"] == "cifar10-folder" and check["dataset_from"] == "given with --dataset"


def test_repaired_checkpoint_dataset_from_its_run_record(workdir, tiny_model):
    repaired = save_checkpoint(tiny_model, workdir / "artifacts" / "alexnet_repaired.pth")
    arch = tiny_model.arch()
    assert choose_dataset(None, repaired, arch).name == "cifar10"          # no sidecar, no record: as before
    assert choose_dataset(None, repaired, arch).origin.startswith("default")
    # run_repair.py writes no sidecar; its run record in results/ names the output and the dataset
    other = workdir / "results" / "repair_other_20240101-000000.json"
    write_json(other, {"tool": "run_repair", "output": "artifacts/elsewhere.pth", "dataset": "cifar10"})
    write_json(workdir / "results" / "repair_partial_20240101-000001.json",
               {"tool": "run_repair", "output": None, "dataset": "cifar10"})
    record = workdir / "results" / "repair_synthetic_misclassified_edit_dataset_20240101-000002.json"
    write_json(record, {"tool": "run_repair", "weights": "artifacts/alexnet_base.pth",
                        "output": "artifacts/alexnet_repaired.pth", "dataset": "synthetic"})
    choice = choose_dataset(None, repaired, arch)
    assert choice.name == "synthetic" and choice.origin == f"named by the repair record {record.relative_to(workdir)}"
    assert choose_dataset("cifar10", repaired, arch).name == "cifar10"
    # a training sidecar beside the checkpoint comes first
    write_json(repaired.with_suffix(".json"), {"checkpoint": str(repaired), "dataset": "cifar10-folder",
                                               "arch": arch})
    assert choose_dataset(None, repaired, arch).name == "cifar10"


@pytest.mark.parametrize("sidecar", ["not json {", '["a list"]', '{"dataset": "imagenet"}',
                                     '{"dataset": "synthetic", "arch": {"hidden": 1}}'])
def test_unusable_sidecar_falls_back(workdir, tiny_model, sidecar):
    path = save_checkpoint(tiny_model, workdir / "artifacts" / "model.pth")
    path.with_suffix(".json").write_text(sidecar)
    choice = choose_dataset(None, path, tiny_model.arch())
    assert choice.name == "cifar10" and choice.origin.startswith("default")


def test_commands_return_their_report_lines_instead_of_printing(tmp_path, capsys):
    from alexnet_repair.interop import commands

    source = save_checkpoint(small_alexnet(scale=16, seed=0).eval(), tmp_path / "m.pth")
    args = convert_model.build_parser().parse_args(["state-dict", str(source), "--to", "flat"])
    lines = commands.run_state_dict(args)
    assert capsys.readouterr().out == ""
    assert lines[0].startswith(f"converted        {source} (plain keys) -> flat keys, ")
    assert lines[-1] == f"wrote            {tmp_path / 'm_flat.pth'}"
