"""What produced a result: the toolkit version, its git commit and the library versions (written into every record)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _installed(package: str) -> str | None:
    """A package's installed version, read from its metadata: importing torchvision to ask costs 1.5 s."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def versions() -> dict:
    import numpy

    from . import __version__
    return {"alexnet_repair": __version__, "torch": torch.__version__, "torchvision": _installed("torchvision"),
            "numpy": numpy.__version__, "python": sys.version.split()[0], "git_commit": git_commit()}
