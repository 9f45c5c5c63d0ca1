"""Small figures shared by the tools: a contact sheet of images with titles (matplotlib, no pyplot state)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .fileio import atomic_write_bytes

CELL = (150, 180)   # pixels per grid cell: width, height (image below, up to 3 title lines above)
IMAGE_PX = 128      # images are enlarged (nearest neighbour, whole factors) to at most this size
DPI = 100


def _as_hwc(images) -> np.ndarray:
    """(n, 3, H, W) float in [0, 1] or (n, H, W, 3) uint8 -> (n, H, W, 3) float in [0, 1]."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"expected a batch of images (n, 3, H, W) or (n, H, W, 3), got shape {x.shape}")
    if x.shape[1] == 3 and x.shape[-1] != 3:
        x = x.transpose(0, 2, 3, 1)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return np.clip(x, 0.0, 1.0)


def contact_sheet(images, titles, path, ncols: int = 8, colors=None) -> Path:
    """Write a PNG grid of ``images`` with one title (may hold newlines) per image; ``colors`` per title.

    The PNG is ``min(ncols, n) * 150`` pixels wide and ``rows * 180`` high, written atomically. The images are
    pasted into one mosaic and drawn with a single ``imshow``, so even a few hundred images take well under a second.
    """
    x = _as_hwc(images)
    n = len(x)
    if n == 0:
        raise ValueError("no images to draw")
    if len(titles) != n:
        raise ValueError(f"{n} images but {len(titles)} titles")
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    scale = max(1, IMAGE_PX // max(x.shape[1:3]))
    x = x.repeat(scale, axis=1).repeat(scale, axis=2)                           # (n, h, w, 3) enlarged
    h, w = x.shape[1:3]
    width, height = ncols * CELL[0], nrows * CELL[1]
    mosaic = np.ones((height, width, 3), dtype=np.float32)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    for i in range(n):
        row, col = divmod(i, ncols)
        top, left = row * CELL[1] + CELL[1] - h - 4, col * CELL[0] + (CELL[0] - w) // 2
        mosaic[top:top + h, left:left + w] = x[i]
        ax.text(col * CELL[0] + CELL[0] / 2, top - 3, titles[i], ha="center", va="bottom", fontsize=8,
                color=colors[i] if colors else "black")
    ax.imshow(mosaic, interpolation="nearest", extent=(0, width, height, 0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(path, buffer.getvalue())
