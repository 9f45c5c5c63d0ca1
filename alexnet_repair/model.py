"""The canonical CIFAR-10 AlexNet (torchvision layout, 10 classes, 64x64 inputs) and its checkpoints.

Accepted checkpoint formats (always read with ``torch.load(..., weights_only=True)``):
- a plain ``state_dict`` with ``features.*`` / ``classifier.*`` keys (what :func:`save_checkpoint` writes);
- the flattened-Sequential keys of the earlier sytorch-based toolkit: ``0.<i>.*`` -> ``features.<i>.*`` and
  ``3.<i>.*`` -> ``classifier.<i>.*``;
- a dict holding such a state dict under ``state_dict`` / ``model_state_dict`` / ``model`` (plus metadata).
Layer widths are read from the tensors' shapes, so narrow test instances load the same way.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError, UsageError
from .fileio import atomic_write_files, load_tensor_file

NUM_CLASSES = 10
CANONICAL_CHANNELS = (64, 192, 384, 256, 256)
CANONICAL_HIDDEN = 4096
CLASSIFIER_LINEARS = ("classifier.1", "classifier.4", "classifier.6")


class AlexNet(nn.Module):
    """torchvision's AlexNet with configurable widths; ``AlexNet()`` is the canonical 57M-parameter model."""

    def __init__(self, channels=CANONICAL_CHANNELS, hidden=CANONICAL_HIDDEN, num_classes=NUM_CLASSES, dropout=0.5):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.channels, self.hidden, self.num_classes = tuple(channels), hidden, num_classes
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(c5 * 36, hidden), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 64, 64) images in [0, 1] -> (B, 36*c5) input of the classifier."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def arch(self) -> dict:
        return {"channels": list(self.channels), "hidden": self.hidden, "num_classes": self.num_classes}


def small_alexnet(scale: int = 16, seed: int | None = 0) -> AlexNet:
    """A narrow AlexNet with the canonical structure (channels and hidden width divided by ``scale``) for tests."""
    if seed is not None:
        torch.manual_seed(seed)
    return AlexNet(tuple(max(c // scale, 2) for c in CANONICAL_CHANNELS), max(CANONICAL_HIDDEN // scale, 8))


_FLAT_KEY = re.compile(r"^(\d+)\.(\d+)\.(weight|bias)$")
_FLAT_PREFIX = {"0": "features", "3": "classifier"}


def normalize_keys(state: dict) -> dict:
    """Map the earlier toolkit's flattened-Sequential keys (``0.0.weight``, ``3.6.bias``) to the canonical ones."""
    out = {}
    for key, value in state.items():
        match = _FLAT_KEY.match(key)
        if match and match.group(1) in _FLAT_PREFIX:
            key = f"{_FLAT_PREFIX[match.group(1)]}.{match.group(2)}.{match.group(3)}"
        out[key.removeprefix("module.")] = value
    return out


def _unwrap(obj, source: str) -> dict:
    if isinstance(obj, dict):
        for name in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(name), dict):
                return obj[name]
        return obj
    raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a state dict of tensors")


def model_from_state_dict(state: dict, source: str = "state dict", owned: bool = False) -> AlexNet:
    """Build an AlexNet whose widths fit ``state`` and load it; every problem raises one-line CheckpointError.

    ``owned``: ``state`` is the caller's to give away (just read from a file), so the model takes its float32
    tensors as they are; otherwise the model gets copies and ``state`` stays independent of it.
    """
    state = normalize_keys(_unwrap(state, source))
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entry {bad[0]!r} is not a tensor")
    try:
        channels = tuple(int(state[f"features.{i}.weight"].shape[0]) for i in (0, 3, 6, 8, 10))
        hidden = int(state["classifier.1.weight"].shape[0])
        num_classes = int(state["classifier.6.weight"].shape[0])
    except KeyError as err:
        raise CheckpointError(f"{source}: missing key {err.args[0]!r} (not an AlexNet checkpoint?)") from None
    if num_classes != NUM_CLASSES:
        raise CheckpointError(f"{source}: classifier.6 has {num_classes} outputs, expected {NUM_CLASSES}")
    with torch.device("meta"):  # shapes only: no memory, no random init
        skeleton = AlexNet(channels, hidden, num_classes)
    expected = skeleton.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: missing keys {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected keys {', '.join(unexpected[:4])}"
                              f"{' ...' if len(unexpected) > 4 else ''}")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}")
        if not state[key].is_floating_point():
            raise CheckpointError(f"{source}: {key} has dtype {state[key].dtype}, expected a float tensor")
        if not all_finite(state[key]):
            raise CheckpointError(f"{source}: {key} holds non-finite values (NaN or inf)")
    # the tensors become the parameters (copies unless ``owned``): no random init of a model about to be overwritten
    skeleton.load_state_dict({k: v.to(torch.float32, copy=not owned).contiguous() for k, v in state.items()},
                             assign=True)
    return skeleton.eval()


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or inf in ``tensor``: its min and max are finite (aminmax propagates NaN; 7x faster than isfinite)."""
    if tensor.numel() == 0:
        return True
    low, high = tensor.aminmax()
    return bool(torch.isfinite(low) and torch.isfinite(high))


def load_checkpoint(path: str | Path) -> AlexNet:
    """Load any accepted checkpoint format from ``path`` into an AlexNet in eval mode (float32, CPU).

    Every unreadable file (missing, a folder, empty, text, truncated, random bytes, a pickle of other objects)
    and every state dict that does not fit the architecture raises a one-line CheckpointError.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    obj = load_tensor_file(path, "checkpoint", CheckpointError)
    return model_from_state_dict(obj, source=str(path), owned=True)


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Atomically write ``model.state_dict()`` (a plain, torchvision-style state dict) to ``path``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write_files({path: lambda handle: torch.save(state, handle)})[0]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def layer_position(layer: str) -> int:
    """'classifier.6' -> 6: a classifier layer's position in ``classifier`` (also the number of classifier modules
    its input passes through, and the stop of a FeatureCache that feeds it)."""
    return int(resolve_layer(layer).split(".")[1])


def resolve_layer(name: str | int) -> str:
    """Accept 'classifier.6', '6', 'last', 'fc3', -1, 3 ... and return the canonical layer name."""
    aliases = {"last": "classifier.6", "penultimate": "classifier.4", "first": "classifier.1",
               "fc1": "classifier.1", "fc2": "classifier.4", "fc3": "classifier.6",
               "1": "classifier.1", "4": "classifier.4", "6": "classifier.6",
               "-1": "classifier.6", "-2": "classifier.4", "-3": "classifier.1",
               "3.1": "classifier.1", "3.4": "classifier.4", "3.6": "classifier.6"}
    key = str(name).strip()
    if key in CLASSIFIER_LINEARS:
        return key
    if key in aliases:
        return aliases[key]
    raise UsageError(f"unknown layer {name!r}: choose one of {', '.join(CLASSIFIER_LINEARS)} (or last/penultimate/first)")
