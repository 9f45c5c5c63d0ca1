"""Convert checkpoints between the torchvision layout and the earlier toolkit's flattened keys.

- ``plain``: ``features.<i>.weight`` / ``classifier.<i>.bias`` (torchvision; what the toolkit writes);
- ``flat``: the earlier sytorch-based toolkit's flattened Sequential, ``0.<i>.*`` for ``features.<i>.*`` and
  ``3.<i>.*`` for ``classifier.<i>.*`` (``3.1``, ``3.4``, ``3.6`` are the three Linear layers).

The tensors are passed through untouched (same dtype, shape and bytes); only the keys change. A checkpoint that
wraps its state dict (``{"state_dict": ...}``, ``model_state_dict``, ``model``) is unwrapped; the wrapper's other
entries (epoch, optimizer ...) are dropped and named in the result.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from ..errors import CheckpointError, UsageError
from ..fileio import atomic_write_files
from ..model import load_checkpoint, model_from_state_dict, normalize_keys

LAYOUTS = ("plain", "flat")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PLAIN_KEY = re.compile(r"^(features|classifier)\.(\d+)\.(weight|bias)$")
_FLAT_INDEX = {"features": "0", "classifier": "3"}


def unwrap(obj, source: str = "checkpoint") -> tuple[dict, list[str]]:
    """(state dict, names of dropped wrapper entries) of a loaded checkpoint object."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict of tensors")
    for name in WRAPPER_KEYS:
        if isinstance(obj.get(name), dict):
            return obj[name], sorted(str(k) for k in obj if k != name)
    return obj, []


def to_plain(state: dict) -> dict:
    """Flattened (or ``module.``-prefixed) keys -> ``features.*`` / ``classifier.*``; tensors untouched."""
    return normalize_keys(state)


def to_flat(state: dict) -> dict:
    """``features.<i>.*`` -> ``0.<i>.*`` and ``classifier.<i>.*`` -> ``3.<i>.*`` (from either layout)."""
    out = {}
    for key, value in normalize_keys(state).items():
        match = _PLAIN_KEY.match(key)
        if match is None:
            raise CheckpointError(f"unexpected key {key!r}: not an AlexNet features/classifier parameter")
        out[f"{_FLAT_INDEX[match.group(1)]}.{match.group(2)}.{match.group(3)}"] = value
    return out


def layout_of(state: dict) -> str:
    return "flat" if any(re.match(r"^\d+\.\d+\.", str(k)) for k in state) else "plain"


def default_output(source: Path, to: str) -> Path:
    return source.with_name(f"{source.stem}_{to}.pth")


def convert_checkpoint(source: str | Path, to: str, output: str | Path | None = None, force: bool = False) -> dict:
    """Write ``source``'s state dict in layout ``to`` to ``output`` (atomically); returns what was done."""
    if to not in LAYOUTS:
        raise UsageError(f"--to must be one of {', '.join(LAYOUTS)} (got {to!r})")
    source = Path(source)
    load_checkpoint(source)  # validates: missing file, pickles, shapes, dtypes ... as one-line errors
    output = Path(output) if output else default_output(source, to)
    if output.resolve() == source.resolve():
        raise UsageError(f"--output {output} is the input checkpoint: choose another path")
    if output.exists() and not force:
        raise UsageError(f"{output} exists: pass --force to overwrite it, or choose another --output")
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot read checkpoint ({(str(err).splitlines() or ['?'])[0]})") from None
    state, dropped = unwrap(obj, str(source))
    converted = to_plain(state) if to == "plain" else to_flat(state)
    model_from_state_dict(converted, source=f"{source} converted to {to}")  # still loads
    atomic_write_files({output: lambda handle: torch.save(converted, handle)})
    return {"source": str(source), "source_layout": layout_of(state), "output": str(output), "layout": to,
            "tensors": len(converted), "dropped_wrapper_entries": dropped}
