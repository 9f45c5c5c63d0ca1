"""Warm starts between the IPM rounds of certified.py: an early iterate of one round's LP (its snapshot, taken
while the IPM is still far from the boundary), mapped onto the next round's LP, which differs only in some
margin rows and, of preserve points, some logit changes.

Columns and rows are matched by formulation's keys; matched ones keep their values. A new logit change
v+ - v- takes the value its D row gives at the snapshot's weights, a new margin row's surplus its row's
activity (at least ``floor``), so only violated rows start with a residual; each new column's dual is the
snapshot's complementarity mu over its value, new rows' multipliers start at 0; then every value is shifted
away from its bound (SHIFT). The infeasible-start IPM removes the rest. Nothing here needs trust: every point
is certified independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alexnet_repair.repair.lp.ipm.formulation import COL_KINDS, KIND_SHIFT, ROW_D, ROW_MARGIN, IpmLP, key

WARM = (1.0, 0.3)  # each round after the first starts from an iterate of the last round, mapped onto its LP:
#                   the first with merit below WARM[0] when more than WARM_SHARE of its rows are new,
#                   else the first below WARM[1]: a later iterate saves more iterations but sits so close to the
#                   old boundary that it blocks the steps of many new rows (measured: bench/README.md, "Tuning")
WARM_SHARE = 0.25
SHIFT = 0.5  # every x, w grows by SHIFT * (x.z + w.s) / (sum z + sum s), every z, s likewise (Mehrotra's shift
#             of a starting point): the snapshot's small values would otherwise block the steps


@dataclass
class LastRound:
    """What the next round's warm start needs of a round: its LP's keys and upper bounds, the IPM's snapshots
    (one per level of WARM, None where the merit never fell below it) and the margin rows it held."""

    col_keys: np.ndarray
    row_keys: np.ndarray
    ub: np.ndarray
    snapshots: list
    keep: np.ndarray


def lookup(keys: np.ndarray, old_keys: np.ndarray) -> np.ndarray:
    """For each of ``keys`` its position in ``old_keys``, or -1."""
    if not old_keys.size:
        return np.full(keys.size, -1)
    order = np.argsort(old_keys, kind="stable")
    pos = np.minimum(np.searchsorted(old_keys, keys, sorter=order), old_keys.size - 1)
    return np.where(old_keys[order[pos]] == keys, order[pos], -1)


def warm_start(old: LastRound, snapshot: tuple, new: IpmLP) -> tuple:
    """(x, w, y, z, s) for ``new`` from one of the last round's snapshots (x, w, y, z, s)."""
    x0, w0, y0, z0, s0 = snapshot
    b0 = np.isfinite(old.ub)
    mu = float(x0 @ z0 + w0[b0] @ s0[b0]) / (x0.size + int(b0.sum()))
    floor = np.sqrt(mu)
    bnd = np.isfinite(new.ub)
    ci = lookup(new.col_keys, old.col_keys)
    hit = ci >= 0
    x = np.zeros(new.c.size)
    x[hit] = x0[ci[hit]]
    kind, sub = new.col_keys >> KIND_SHIFT, new.col_keys & ((1 << KIND_SHIFT) - 1)
    vp = np.flatnonzero(~hit & (kind == COL_KINDS["v+"]))
    vm = np.flatnonzero(~hit & (kind == COL_KINDS["v-"]))  # v+ and v- of a logit change are new together
    d_row = lookup(key(ROW_D, sub[vp]), new.row_keys)
    val = (new.b - new.op.matvec(x))[d_row]  # the v+ - v- its D row asks for at the snapshot's weights
    x[vp], x[vm] = np.maximum(val, 0.0) + floor, np.maximum(-val, 0.0) + floor
    sp_ = np.flatnonzero(~hit & (kind == COL_KINDS["s"]))
    m_row = lookup(key(ROW_MARGIN, sub[sp_]), new.row_keys)
    x[sp_] = np.maximum(-(new.b - new.op.matvec(x))[m_row], floor)
    rest = ~hit & (x == 0)
    x[rest] = 1.0
    x = np.where(bnd, np.minimum(x, new.ub * (1 - 1e-3)), x)
    z = mu / x
    z[hit] = z0[ci[hit]]
    w = np.where(bnd, new.ub - x, 1.0)
    both = hit & bnd & b0[np.maximum(ci, 0)]
    w[both] = w0[ci[both]]
    s = np.where(bnd, mu / w, 0.0)
    s[both] = s0[ci[both]]
    if SHIFT:  # x + w = ub then misses by 2 dx: the IPM's ru residual, removed like the others
        xz = x @ z + w[bnd] @ s[bnd]
        dx = SHIFT * xz / (z.sum() + s[bnd].sum())
        dz = SHIFT * xz / (x.sum() + w[bnd].sum())
        x, z = x + dx, z + dz
        w, s = np.where(bnd, w + dx, 1.0), np.where(bnd, s + dz, 0.0)
    ri = lookup(new.row_keys, old.row_keys)
    y = np.where(ri >= 0, y0[np.maximum(ri, 0)], 0.0)
    return x, w, y, z, s


def round_start(prev: LastRound | None, keep: np.ndarray, new: IpmLP) -> tuple | None:
    """The start of a round's IPM (None: cold): the last round's earlier snapshot when more than WARM_SHARE of
    the margin rows ``keep`` are new, else its later one."""
    if prev is None:
        return None
    new_share = np.setdiff1d(keep, prev.keep).size / max(keep.size, 1)
    snap = prev.snapshots[0 if new_share > WARM_SHARE else 1]
    return warm_start(prev, snap, new) if snap is not None else None
