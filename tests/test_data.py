"""CIFAR-10 loading through torchvision's reader, preprocessing, and the offline synthetic set."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from alexnet_repair.data import CLASS_NAMES, load_split, preprocess, synthetic_split
from alexnet_repair.errors import DataError


def test_cifar_format_folder_loads_with_a_warning(cifar_dir, caplog):
    split = load_split("cifar10", "test", cifar_dir, download=False)
    assert split.dataset == "cifar10-folder"  # not the official files: md5 differs
    assert split.images.shape == (100, 32, 32, 3) and split.images.dtype == torch.uint8
    assert sorted(np.bincount(split.labels.numpy(), minlength=10).tolist()) == [10] * 10
    assert "md5" in caplog.text
    train = load_split("cifar10", "train", cifar_dir, download=False)
    assert len(train) == 100


def test_pixels_survive_the_pickle_round_trip(cifar_dir):
    split = load_split("cifar10", "test", cifar_dir, download=False)
    original = synthetic_split("test", seed=0, size=100)
    assert torch.equal(split.images, original.images) and torch.equal(split.labels, original.labels)


def test_preprocess_matches_the_torchvision_pil_pipeline():
    raw = synthetic_split("test", size=8).images
    pipeline = transforms.Compose([transforms.Resize(70), transforms.CenterCrop(64), transforms.ToTensor()])
    reference = torch.stack([pipeline(Image.fromarray(img.numpy())) for img in raw])
    ours = preprocess(raw)
    assert ours.shape == reference.shape == (8, 3, 64, 64)
    assert float((ours - reference).abs().max()) <= 2.5 / 255  # uint8 rounding of the bilinear resize
    assert float((ours - reference).abs().mean()) < 0.5 / 255


def test_missing_data_offline_says_what_to_do(tmp_path):
    with pytest.raises(DataError) as err:
        load_split("cifar10", "test", tmp_path, download=False)
    text = str(err.value)
    assert "--data-dir" in text and "--dataset synthetic" in text and "download" in text and "\n" not in text


def test_incomplete_folder_is_named(tmp_path, cifar_dir):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes((cifar_dir / "cifar-10-batches-py" / "test_batch").read_bytes())
    with pytest.raises(DataError, match="missing batches.meta"):
        load_split("cifar10", "test", tmp_path, download=False)


def test_corrupt_batch_is_a_one_line_error(tmp_path, cifar_dir):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in (cifar_dir / "cifar-10-batches-py").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError) as err:
        load_split("cifar10", "test", tmp_path, download=False)
    assert "\n" not in str(err.value)


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="unknown dataset"):
        load_split("mnist", "test")
    with pytest.raises(DataError, match="unknown split"):
        load_split("synthetic", "val")


def test_synthetic_is_deterministic_and_balanced():
    a, b = synthetic_split("test", size=200), synthetic_split("test", size=200)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.dataset == "synthetic" and "synthetic" in a.source
    assert np.bincount(a.labels.numpy(), minlength=10).tolist() == [20] * 10
    assert not torch.equal(synthetic_split("train", size=200).images, a.images)
    assert len(CLASS_NAMES) == 10


def test_synthetic_classes_differ_but_overlap():
    """Learnable (a nearest-class-mean rule on raw pixels beats chance by far) but not trivially separable:
    images mix two classes, so even that rule stays well short of 100%."""
    train, test = synthetic_split("train", size=2000), synthetic_split("test", size=500)
    x = train.images.float().reshape(len(train), -1)
    means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
    pred = torch.cdist(test.images.float().reshape(len(test), -1), means).argmin(1)
    accuracy = float((pred == test.labels).float().mean())
    assert 0.4 < accuracy < 0.95


def test_batches_cover_the_split_in_order():
    split = synthetic_split("test", size=50)
    seen = torch.cat([idx for _, _, idx in split.batches(16)])
    assert torch.equal(seen, torch.arange(50))
    x, y, _ = next(split.batches(16))
    assert x.shape == (16, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
