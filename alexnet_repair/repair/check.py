"""Independent float32 check of a repair LP solution (no solver involved).

Writes the changes into float32 copies of the layers, as the saved model will hold them,
recomputes the edit points' logits in float32 and reports targets, margins, bounds and
activation patterns. The lead's model-level verification does the same on the real model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alexnet_repair.repair.lp import LPSpec


@dataclass
class CheckReport:
    all_correct: bool  # every edit point predicted as its target
    min_margin: float  # min_i (y[t_i] - max_{c != t_i} y[c]) in float32
    margin_ok: bool  # min_margin >= spec.margin
    max_change: float  # largest |float32(new) - float32(old)| over the changed parameters
    bound_ok: bool  # max_change <= spec.param_bound
    pattern_flips: int  # hidden units whose ReLU state differs from the original, among |z0| >= tol
    ok: bool  # all of the above

    def __str__(self) -> str:
        return (f"ok={self.ok} correct={self.all_correct} min_margin={self.min_margin:.6g} "
                f"max_change={self.max_change:.6g} pattern_flips={self.pattern_flips}")


def apply_changes(spec: LPSpec, dW: np.ndarray, db: list[np.ndarray]):
    """float32 (weights, biases) of layers k..m after the change; rows outside R bit-identical."""
    rows = np.arange(spec.weights[0].shape[0]) if spec.rows is None else spec.rows
    ws = [w.astype(np.float32) for w in spec.weights]
    bs = [b.astype(np.float32) for b in spec.biases]
    ws[0][rows] = (ws[0][rows].astype(np.float64) + dW).astype(np.float32)
    bs[0][rows] = (bs[0][rows].astype(np.float64) + db[0]).astype(np.float32)
    for l in range(1, len(ws)):
        bs[l] = (bs[l].astype(np.float64) + db[l]).astype(np.float32)
    return ws, bs


def forward32(inputs: np.ndarray, ws, bs):
    """float32 forward through layers k..m; returns the pre-activations of every layer."""
    a = inputs.astype(np.float32)
    zs = []
    for l, (w, b) in enumerate(zip(ws, bs)):
        z = a @ w.T + b
        zs.append(z)
        a = np.maximum(z, np.float32(0))
    return zs


def check_solution(spec: LPSpec, dW: np.ndarray, db: list[np.ndarray], pattern_tol: float | None = None) -> CheckReport:
    """Check (dW, db) for ``spec`` in float32. Pattern flips are counted only where both the
    original and the new |pre-activation| >= pattern_tol (default spec.pattern_eps / 2): a unit
    sitting at ~0 contributes ~0 either way, and float32 cannot resolve its sign."""
    tol = spec.pattern_eps / 2 if pattern_tol is None else pattern_tol
    ws0 = [w.astype(np.float32) for w in spec.weights]
    bs0 = [b.astype(np.float32) for b in spec.biases]
    ws, bs = apply_changes(spec, dW, db)
    z_old = forward32(spec.inputs, ws0, bs0)
    z_new = forward32(spec.inputs, ws, bs)
    y = z_new[-1].astype(np.float64)
    n = y.shape[0]
    tgt = y[np.arange(n), spec.targets]
    other = y.copy()
    other[np.arange(n), spec.targets] = -np.inf
    margins = tgt - other.max(1)
    changes = [np.abs(w.astype(np.float64) - w0.astype(np.float64)).max() for w, w0 in zip(ws[:1], ws0[:1])]
    changes += [np.abs(b.astype(np.float64) - b0.astype(np.float64)).max() for b, b0 in zip(bs, bs0)]
    max_change = float(max(changes))
    flips = 0
    for zo, zn in zip(z_old[:-1], z_new[:-1]):
        sure = (np.abs(zo) >= tol) & (np.abs(zn) >= tol)
        flips += int(((zo > 0) != (zn > 0))[sure].sum())
    min_margin = float(margins.min()) if n else float("inf")
    correct = bool((y.argmax(1) == spec.targets).all())
    margin_ok = min_margin >= spec.margin
    bound_ok = max_change <= spec.param_bound
    return CheckReport(correct, min_margin, margin_ok, max_change, bound_ok, flips,
                       correct and margin_ok and bound_ok and flips == 0)
