"""CIFAR-10 (torchvision), CIFAR-format folders, and an offline synthetic set, in the model's input format.

Images are kept as raw uint8 (N, 32, 32, 3) and turned into model inputs batch by batch with the spec's
preprocessing: resize the short side to 70, centre-crop 64x64, scale to [0, 1] (``ToTensor``), no normalisation.
"""

from __future__ import annotations

import logging
import pickle
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .fileio import one_line
from .progress_log import progress
from .synthetic import synthetic_images

log = logging.getLogger(__name__)

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATASETS = ("cifar10", "synthetic")
RESIZE, CROP = 70, 64
SYNTHETIC_SIZES = {"train": 8000, "test": 2000}
SYNTHETIC_SEED = 0


@dataclass
class Split:
    """One split of a dataset: raw uint8 images (N, 32, 32, 3) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str      # "cifar10", "cifar10-folder" (CIFAR layout, not the official files) or "synthetic"
    split: str        # "train" or "test"
    source: str       # folder or generator description, for records

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int) -> "Split":
        """The first ``n`` images (all if fewer)."""
        return Split(self.images[:n], self.labels[:n], self.dataset, self.split, f"{self.source}[:{n}]")

    def inputs(self, index=None) -> torch.Tensor:
        """Model inputs (n, 3, 64, 64) float32 in [0, 1] for ``index`` (None = all; mind the memory)."""
        raw = self.images if index is None else self.images[torch.as_tensor(index, dtype=torch.long)]
        return preprocess(raw)

    def batches(self, batch_size: int = 256, index=None):
        """Yield (inputs, labels, dataset_indices) in order, ``batch_size`` at a time."""
        order = torch.arange(len(self)) if index is None else torch.as_tensor(index, dtype=torch.long)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield preprocess(self.images[idx]), self.labels[idx], idx


def preprocess(raw: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 32, 32, 3) -> float32 (n, 3, 64, 64): Resize(70) + CenterCrop(64) + ToTensor, batched.

    torchvision's ``transforms.v2`` resize of a uint8 tensor, spelled in torch (importing torchvision costs 1.5 s
    of every script's start); ``tests/test_data.py`` checks the pixels equal torchvision's."""
    x = raw.permute(0, 3, 1, 2).contiguous()   # square images (CIFAR's 32 x 32): the short side is either side
    x = _resize_uint8(x, [RESIZE, RESIZE]) if len(x) else x.new_zeros((0, x.shape[1], RESIZE, RESIZE))
    start = int(round((RESIZE - CROP) / 2.0))
    return x[..., start:start + CROP, start:start + CROP].to(torch.float32).div_(255.0)


def _resize_uint8(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Bilinear, antialiased, as torchvision does it on the CPU: natively in uint8 where the CPU has AVX2/AVX-512
    (or is ARM), else in float32, rounded back to uint8."""
    native = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")
    if native:
        return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    out = torch.nn.functional.interpolate(x.to(torch.float32), size=size, mode="bilinear", align_corners=False,
                                          antialias=True)
    return out.round_().to(torch.uint8)


def dataset_family(name: str | None) -> str:
    """The --dataset a recorded dataset name is loaded with: "cifar10-folder" (a CIFAR-format folder) -> "cifar10"."""
    return (name or "cifar10").removesuffix("-folder")


@dataclass(frozen=True)
class DataSource:
    """Where the splits of a run come from: the --dataset, its --data-dir and whether it may be downloaded."""

    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = True

    def load(self, split: str) -> "Split":
        return load_split(self.dataset, split, self.data_dir, download=self.download)


def load_split(dataset: str = "cifar10", split: str = "test", data_dir: str | Path = "data",
               download: bool = True, synthetic_seed: int = SYNTHETIC_SEED) -> Split:
    """Load ``split`` of ``dataset``. CIFAR-10 is downloaded into ``data_dir`` on first use when ``download``.

    The synthetic set is fixed by ``synthetic_seed`` (not the scripts' ``--seed``), so every tool sees the same images.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    start = time.perf_counter()
    out = synthetic_split(split, seed=synthetic_seed) if dataset == "synthetic" else \
        _load_cifar(Path(data_dir), split, download)
    progress.info("loaded the %s split of %s: %d images (%.1f s)", split, out.dataset, len(out),
                  time.perf_counter() - start)
    return out


# The official CIFAR-10 python files and sizes (torchvision lists the names with md5 sums; tests/test_data.py checks
# them). Other sizes are not official: read here, no torchvision import (1.5 s); these go through its md5 check.
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_META = ("batches.meta", 158)
CIFAR_FILES = {"train": (("data_batch_1", 31035704), ("data_batch_2", 31035320), ("data_batch_3", 31035999),
                         ("data_batch_4", 31035696), ("data_batch_5", 31035623)),
               "test": (("test_batch", 31035526),)}
_WARNED: set[Path] = set()  # CIFAR-format folders already said to be unofficial (once a process)


def _load_cifar(root: Path, split: str, download: bool) -> Split:
    folder = root / CIFAR_FOLDER
    if root.exists() and not root.is_dir():
        raise DataError(f"{root} is a file: the data folder must be a folder holding {CIFAR_FOLDER}")
    files = CIFAR_FILES[split] + (CIFAR_META,)
    wanted = [name for name, _ in files]
    present = [name for name in wanted if (folder / name).exists()]
    if len(present) == len(wanted) and all((folder / name).stat().st_size == size for name, size in files):
        try:
            return _official_split(_torchvision_cifar(root, split, download=False), split, folder)
        except RuntimeError:
            pass  # the official sizes but not the official files: read below
    if present:
        missing = sorted(set(wanted) - set(present))
        if missing:
            raise DataError(f"{folder} is incomplete: missing {', '.join(missing)}")
        if (seen := folder.resolve()) not in _WARNED:
            _WARNED.add(seen)
            log.warning("%s does not match the official CIFAR-10 md5 sums: loading it as a CIFAR-format folder", folder)
        images, labels = read_cifar_folder(folder, wanted[:-1], wanted[-1])
        return _to_split(images, labels, "cifar10-folder", split, folder)
    if not download:
        raise DataError(_missing_message(folder))
    try:
        ds = _torchvision_cifar(root, split, download=True)
    except Exception as err:  # no network, a file in the way, a corrupt download (tarfile, OSError, RuntimeError ...)
        raise DataError(f"{_missing_message(folder)} (download failed: {one_line(err)})") from None
    return _official_split(ds, split, folder)


def _torchvision_cifar(root: Path, split: str, download: bool):
    """torchvision's CIFAR10 (it checks the md5 sums; RuntimeError when the files are not the official ones)."""
    from torchvision.datasets import CIFAR10

    return CIFAR10(str(root), train=split == "train", download=download)


def _official_split(ds, split: str, folder: Path) -> Split:
    return _to_split(np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64), "cifar10", split, folder)


def _missing_message(folder: Path) -> str:
    return (f"CIFAR-10 not found in {folder}: run once with internet to download it, point --data-dir at a folder "
            f"holding cifar-10-batches-py, or use --dataset synthetic offline")


# What a CIFAR python batch may reference: numpy arrays (and numpy scalars in a label list), and the bytes
# codec that Python 3's protocol-2 pickles use. Anything else - a class, a function - is refused unread: the
# files of a CIFAR-format folder are not the md5-checked official ones, and plain pickle would run their code.
_PICKLE_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                   for name in ("_reconstruct", "scalar")} | {
    (module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")} | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only arrays, "
                                     f"lists, numbers and strings")


def _read_cifar_pickle(path: Path) -> dict:
    """One python-format CIFAR file as a dict with str keys (Python 2 str, Python 3 str or bytes keys alike)."""
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a CIFAR-format batch")
    try:
        with open(path, "rb") as handle:
            obj = _ArrayUnpickler(handle, encoding="latin1").load()
    except Exception as err:  # a corrupt pickle can raise many types; report which file and why
        raise DataError(f"{path}: cannot read CIFAR-format batch ({type(err).__name__}: {one_line(err)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, expected a dict (the CIFAR python format)")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in obj.items()}


def read_cifar_folder(folder: Path, batch_names, meta_name: str = "batches.meta") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of the CIFAR-10 python batches ``batch_names`` in
    ``folder``, in order. Keys may be str or bytes (``b"data"``, ``b"labels"``: what ``pickle.load(f,
    encoding="bytes")`` gives, as in the format's own Python 3 snippet); a CIFAR-100 layout is refused."""
    folder = Path(folder)
    meta_path = folder / meta_name
    meta = _read_cifar_pickle(meta_path)
    if "label_names" not in meta and ("fine_label_names" in meta or "coarse_label_names" in meta):
        raise DataError(f"{meta_path}: a CIFAR-100 layout (fine_label_names): this toolkit reads CIFAR-10 "
                        f"(10 classes, 'label_names')")
    names = meta.get("label_names")
    if names is not None and len(names) != len(CLASS_NAMES):
        raise DataError(f"{meta_path}: {len(names)} label_names, CIFAR-10 has {len(CLASS_NAMES)} classes")
    images, labels = [], []
    for name in batch_names:
        path = folder / name
        entry = _read_cifar_pickle(path)
        if "labels" not in entry and ("fine_labels" in entry or "coarse_labels" in entry):
            raise DataError(f"{path}: a CIFAR-100 batch (fine_labels): this toolkit reads CIFAR-10 "
                            f"(10 classes, 'labels')")
        missing = [key for key in ("data", "labels") if key not in entry]
        if missing:
            keys = ", ".join(map(str, list(entry)[:6])) or "none"
            raise DataError(f"{path}: no {' or '.join(repr(k) for k in missing)} in it (keys: {keys}), "
                            f"expected a CIFAR-10 python batch")
        try:
            data = np.asarray(entry["data"])
            label = np.asarray(entry["labels"])
        except Exception as err:  # ragged lists and the like
            raise DataError(f"{path}: data/labels are not arrays ({one_line(err)})") from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype.kind not in "iu":
            raise DataError(f"{path}: data has shape {data.shape} ({data.dtype}), expected (N, 3072) uint8 rows")
        if data.dtype != np.uint8:  # integer rows of one's own: fine if they are pixel values
            if data.size and (data.min() < 0 or data.max() > 255):
                raise DataError(f"{path}: data values {data.min()}..{data.max()} are not pixels (0..255)")
            data = data.astype(np.uint8)
        if label.ndim != 1 or label.dtype.kind not in "iu" or len(label) != len(data):
            raise DataError(f"{path}: labels have shape {label.shape} ({label.dtype}), "
                            f"expected {len(data)} integers")
        if len(label) and (label.min() < 0 or label.max() >= len(CLASS_NAMES)):
            raise DataError(f"{path}: labels outside 0..9 (found {label.min()}..{label.max()})")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(label.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _to_split(images: np.ndarray, labels: np.ndarray, name: str, split: str, folder: Path) -> Split:
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise DataError(f"{folder}: images have shape {images.shape} ({images.dtype}), expected (N, 32, 32, 3) uint8")
    if len(labels) != len(images):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{folder}: labels outside 0..9 (found {labels.min()}..{labels.max()})")
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), name, split, str(folder))


def synthetic_split(split: str, seed: int = 0, size: int | None = None) -> Split:
    """The offline ``synthetic`` set (synthetic.py): deterministic from ``seed``, CIFAR-shaped, 10 classes."""
    n = size if size is not None else SYNTHETIC_SIZES[split]
    images, labels = synthetic_images(split, seed, n)
    return Split(torch.from_numpy(images), torch.from_numpy(labels), "synthetic", split, f"synthetic(seed={seed}, n={n})")
