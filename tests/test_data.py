"""CIFAR-10 loading (torchvision for the official files, our reader for CIFAR-format folders), preprocessing, and the
offline synthetic set."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from alexnet_repair.data import CLASS_NAMES, load_split, preprocess, synthetic_split
from alexnet_repair.errors import DataError


def test_cifar_format_folder_loads_with_one_warning(tmp_path, cifar_dir, caplog):
    shutil.copytree(cifar_dir, tmp_path / "copy")            # a folder no other test has read in this process
    split = load_split("cifar10", "test", tmp_path / "copy", download=False)
    assert split.dataset == "cifar10-folder"  # not the official files: md5 differs
    assert split.images.shape == (100, 32, 32, 3) and split.images.dtype == torch.uint8
    assert sorted(np.bincount(split.labels.numpy(), minlength=10).tolist()) == [10] * 10
    train = load_split("cifar10", "train", tmp_path / "copy", download=False)
    assert len(train) == 100
    assert caplog.text.count("md5") == 1                     # said once, though a run reads both splits


def test_official_file_table_matches_torchvision():
    from torchvision.datasets import CIFAR10

    from alexnet_repair.data import CIFAR_FILES, CIFAR_FOLDER, CIFAR_META

    assert CIFAR_FOLDER == CIFAR10.base_folder and CIFAR_META[0] == CIFAR10.meta["filename"]
    assert [n for n, _ in CIFAR_FILES["train"]] == [n for n, _ in CIFAR10.train_list]
    assert [n for n, _ in CIFAR_FILES["test"]] == [n for n, _ in CIFAR10.test_list]


def test_a_cifar_format_folder_loads_without_importing_torchvision(cifar_dir):
    """Files of other sizes than the official ones are read directly: torchvision's import is 1.5 s of a run."""
    import subprocess
    import sys

    code = ("import sys; from alexnet_repair.data import load_split; "
            f"s = load_split('cifar10', 'test', {str(cifar_dir)!r}, download=False); "
            "print(s.dataset, len(s), 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["cifar10-folder", "100", "False"]


def test_files_of_the_official_sizes_go_through_torchvision(cifar_dir, monkeypatch):
    """A folder whose files have the official sizes is handed to torchvision, which checks the md5 sums; these are
    not the official files, so it refuses and the folder reader reads them."""
    from alexnet_repair import data

    folder = cifar_dir / "cifar-10-batches-py"
    sizes = {f.name: f.stat().st_size for f in folder.iterdir()}
    monkeypatch.setattr(data, "CIFAR_META", (data.CIFAR_META[0], sizes[data.CIFAR_META[0]]))
    monkeypatch.setattr(data, "CIFAR_FILES", {k: tuple((n, sizes[n]) for n, _ in v) for k, v in data.CIFAR_FILES.items()})
    asked = []
    real = data._torchvision_cifar
    monkeypatch.setattr(data, "_torchvision_cifar", lambda *a, **k: asked.append(a) or real(*a, **k))
    split = load_split("cifar10", "test", cifar_dir, download=False)
    assert asked and split.dataset == "cifar10-folder" and len(split) == 100


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


@pytest.mark.parametrize("capability", ["native", "DEFAULT"])
def test_preprocess_equals_torchvision_v2_pixel_for_pixel(monkeypatch, capability):
    """The torch spelling of the resize gives torchvision's exact pixels, on AVX CPUs (uint8 kernel) and off them
    (float kernel, rounded)."""
    from torchvision.transforms.v2 import functional as TF

    if capability != "native":  # both read the capability at call time
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    raw = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
    raw = torch.cat([raw, synthetic_split("test", size=16).images])
    x = TF.resize(raw.permute(0, 3, 1, 2).contiguous(), [70], interpolation=TF.InterpolationMode.BILINEAR,
                  antialias=True)
    reference = TF.center_crop(x, [64]).to(torch.float32) / 255.0
    assert torch.equal(preprocess(raw), reference)
    assert preprocess(raw[:0]).shape == (0, 3, 64, 64)


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


def test_synthetic_pixels_do_not_depend_on_the_chunk_size(monkeypatch):
    """The set is built chunk by chunk with every random draw made first: any chunk size gives the same pixels
    (the models trained on it stay valid)."""
    from alexnet_repair import synthetic

    whole = synthetic_split("train", seed=1, size=45)
    monkeypatch.setattr(synthetic, "SYNTHETIC_CHUNK", 7)
    assert torch.equal(synthetic_split("train", seed=1, size=45).images, whole.images)
    monkeypatch.setattr(synthetic, "SYNTHETIC_CHUNK", 1)
    assert torch.equal(synthetic_split("train", seed=1, size=45).images, whole.images)


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


def _copy_with(tmp_path, cifar_dir, rewrite):
    """A copy of the tiny CIFAR folder whose every file went through ``rewrite(entry) -> object to pickle``."""
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in (cifar_dir / "cifar-10-batches-py").iterdir():
        with open(f, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        obj, protocol = rewrite(entry)
        with open(folder / f.name, "wb") as handle:
            pickle.dump(obj, handle, protocol=protocol)
    return tmp_path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_bytes_keys_load_like_str_keys(tmp_path, cifar_dir, protocol):
    """b"data", b"labels", b"label_names": what `pickle.load(f, encoding="bytes")` hands people who then write
    their own batches (the format page's Python 3 snippet); numpy label arrays are fine too."""
    def to_bytes(entry):
        out = {k.encode("latin1"): v for k, v in entry.items()}
        if b"labels" in out:
            out[b"labels"] = np.asarray(out[b"labels"], dtype=np.int64)
        if b"label_names" in out:
            out[b"label_names"] = [n.encode() for n in out[b"label_names"]]
        return out, protocol

    root = _copy_with(tmp_path, cifar_dir, to_bytes)
    for split in ("test", "train"):
        ours, reference = load_split("cifar10", split, root, download=False), load_split("cifar10", split, cifar_dir,
                                                                                         download=False)
        assert ours.dataset == "cifar10-folder" and len(ours) == len(reference)
        assert torch.equal(ours.images, reference.images) and torch.equal(ours.labels, reference.labels)


def test_cifar100_layout_is_refused_clearly(tmp_path, cifar_dir):
    def to_cifar100(entry):
        if "labels" not in entry:
            return {"fine_label_names": [str(i) for i in range(100)]}, 2
        return {b"data": entry["data"], b"fine_labels": entry["labels"], b"coarse_labels": entry["labels"]}, 2

    root = _copy_with(tmp_path, cifar_dir, to_cifar100)
    with pytest.raises(DataError, match="CIFAR-100") as err:
        load_split("cifar10", "test", root, download=False)
    assert "\n" not in str(err.value) and "CIFAR-10 " in str(err.value)


def test_batches_that_would_run_code_are_refused_unread(tmp_path, cifar_dir):
    """CIFAR-format folders are not md5-checked: their pickles may reference numpy arrays and nothing else."""
    import os

    target = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {target}",)

    root = _copy_with(tmp_path, cifar_dir, lambda entry: ({**entry, "data": Payload()} if "data" in entry
                                                          else entry, 2))
    with pytest.raises(DataError, match="refused to load .*system") as err:
        load_split("cifar10", "test", root, download=False)
    assert not target.exists() and "\n" not in str(err.value)
