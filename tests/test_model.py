"""Checkpoint formats, validation errors and atomic saving of the canonical AlexNet."""

import pickle

import pytest
import torch

from alexnet_repair.errors import CheckpointError, UsageError
from alexnet_repair.model import (CANONICAL_CHANNELS, AlexNet, load_checkpoint, model_from_state_dict,
                                  resolve_layer, save_checkpoint, small_alexnet)


def _same_outputs(a, b):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_canonical_layout_matches_torchvision():
    import torchvision

    ours = AlexNet().state_dict()
    theirs = torchvision.models.alexnet(num_classes=10).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    assert AlexNet()(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert sum(p.numel() for p in AlexNet().parameters()) == 57_044_810


def test_plain_state_dict_saved_by_torch_loads_unchanged(tmp_path, tiny_model):
    path = tmp_path / "plain.pth"
    torch.save(tiny_model.state_dict(), path)  # what torchvision-style code writes
    assert _same_outputs(load_checkpoint(path), tiny_model)


def test_flattened_sequential_keys_of_the_earlier_toolkit(tmp_path, tiny_model):
    flat = {}
    for key, value in tiny_model.state_dict().items():
        part, rest = key.split(".", 1)
        flat[("0." if part == "features" else "3.") + rest] = value
    assert "3.6.weight" in flat and "0.0.weight" in flat
    torch.save(flat, tmp_path / "flat.pth")
    assert _same_outputs(load_checkpoint(tmp_path / "flat.pth"), tiny_model)


def test_wrapped_checkpoint_with_metadata(tmp_path, tiny_model):
    torch.save({"state_dict": tiny_model.state_dict(), "epoch": 3, "note": "meta"}, tmp_path / "wrapped.pth")
    assert _same_outputs(load_checkpoint(tmp_path / "wrapped.pth"), tiny_model)


def test_saved_checkpoint_is_a_plain_state_dict_loadable_by_plain_code(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "sub" / "m.pth")
    state = torch.load(path, weights_only=True)
    fresh = small_alexnet(16, seed=5)
    fresh.load_state_dict(state)  # model.load_state_dict(torch.load(p)) works as is
    assert _same_outputs(fresh, tiny_model)
    assert not list(path.parent.glob("*.tmp"))


def test_canonical_width_round_trip(tmp_path):
    model = AlexNet()
    save_checkpoint(model, tmp_path / "full.pth")
    loaded = load_checkpoint(tmp_path / "full.pth")
    assert loaded.channels == CANONICAL_CHANNELS and loaded.hidden == 4096


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("classifier.4.bias"), "missing key"),
    (lambda s: s.__setitem__("classifier.9.weight", torch.zeros(1)), "unexpected keys classifier.9.weight"),
    (lambda s: s.__setitem__("classifier.4.weight", torch.zeros(3, 3)), "classifier.4.weight has shape (3, 3)"),
    (lambda s: s["features.3.weight"].view(-1).__setitem__(0, float("nan")), "non-finite"),
    (lambda s: s["classifier.4.weight"].view(-1).__setitem__(-1, float("inf")), "non-finite"),
    (lambda s: s["classifier.6.bias"].view(-1).__setitem__(3, float("-inf")), "non-finite"),
    (lambda s: s.__setitem__("classifier.6.weight", torch.zeros(7, s["classifier.6.weight"].shape[1])), "7 outputs"),
    (lambda s: s.__setitem__("classifier.1.bias", torch.zeros(s["classifier.1.bias"].shape, dtype=torch.long)),
     "dtype"),
])
def test_validation_errors_are_one_line(tmp_path, tiny_model, mutate, message):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    mutate(state)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "bad.pth")
    assert message in str(err.value) and "\n" not in str(err.value)


class NotTensors:
    pass


@pytest.mark.parametrize("content", ["missing", "pickled-object", "garbage", "list"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "x.pth"
    if content == "pickled-object":
        with open(path, "wb") as handle:
            pickle.dump({"model": NotTensors()}, handle)
    elif content == "garbage":
        path.write_bytes(b"\x00not a checkpoint at all")
    elif content == "list":
        torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_a_model_built_from_a_state_dict_does_not_share_its_tensors(tiny_model):
    state = tiny_model.state_dict()
    model = model_from_state_dict(state)
    model.classifier[6].weight.data.add_(1.0)
    assert not torch.equal(model.classifier[6].weight, tiny_model.classifier[6].weight)


def test_model_from_state_dict_infers_widths(tiny_model):
    model = model_from_state_dict(tiny_model.state_dict())
    assert model.channels == tiny_model.channels and model.hidden == tiny_model.hidden


@pytest.mark.parametrize("name, expected", [("last", "classifier.6"), ("6", "classifier.6"), ("3.4", "classifier.4"),
                                            ("classifier.1", "classifier.1"), ("penultimate", "classifier.4")])
def test_resolve_layer(name, expected):
    assert resolve_layer(name) == expected


def test_resolve_layer_rejects_unknown():
    with pytest.raises(UsageError, match="unknown layer"):
        resolve_layer("features.0")
