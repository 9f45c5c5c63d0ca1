"""Dense block helpers of the structured normal equations (normal_equations.py): inverses of the N x N blocks,
the choice between the two elimination orders, and the small O-row groups of "schur-d"."""

from __future__ import annotations

import numpy as np
import scipy.linalg.lapack as lapack
import scipy.sparse as sp


def symmetric(upper: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle is ``upper``'s (its strict lower triangle is ignored)."""
    return np.triu(upper) + np.triu(upper, 1).T


def spd_inverse(K: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """K with each symmetric positive definite block K[r, :k, :k] (k = sizes[r]; its upper triangle is read)
    replaced by its inverse (in place, both triangles) and the identity as padding: by Cholesky, half the flops of
    a general inverse; LU where it refuses."""
    for r, k in ((r, k) for r, k in enumerate(sizes) if k):  # an empty block is all padding
        block = K[r, :k, :k]
        c, info = lapack.dpotrf(block, lower=0)
        inv, info2 = lapack.dpotri(c, lower=0, overwrite_c=1) if info == 0 else (None, 1)
        block[...] = symmetric(inv) if info2 == 0 else np.linalg.inv(symmetric(block))  # dpotri: the upper one
        K[r, np.arange(k, K.shape[1]), np.arange(k, K.shape[1])] = 1.0  # the padding (zero off the diagonal)
    return K


def choose_mode(n_pts: int, n_r: int, n_o: int, n_coupled: int, group_size: int) -> str:
    """"schur-d" when O splits into small groups and the dense D system is cheaper, else "schur-o".
    n_coupled = O rows coupled to D rows (the width of the Schur update)."""
    n_d = n_pts * n_r
    cost_o = n_r * n_pts**2 * n_coupled + n_d * n_coupled**2 / n_r + n_o**3 / 3
    cost_d = 3 * n_d**3 / 3  # x3: its sparse group products run far below BLAS speed (bench/README.md, "Tuning")
    return "schur-d" if group_size <= 64 and cost_d < cost_o else "schur-o"


def group_blocks(goo: sp.csr_matrix, groups: np.ndarray) -> np.ndarray:
    """Dense (n_groups, g, g) diagonal blocks of goo; padding rows get 1 on the diagonal."""
    n_g, g = groups.shape
    coo = goo.tocoo()
    gid = np.empty(goo.shape[0], dtype=np.int64)
    pos = np.empty(goo.shape[0], dtype=np.int64)
    valid = groups >= 0
    gid[groups[valid]] = np.nonzero(valid)[0]
    pos[groups[valid]] = np.nonzero(valid)[1]
    out = np.zeros((n_g, g, g))
    out[gid[coo.row], pos[coo.row], pos[coo.col]] = coo.data
    pad = ~valid
    out[np.nonzero(pad)[0], np.nonzero(pad)[1], np.nonzero(pad)[1]] = 1.0
    return out


def block_diag(b_inv: np.ndarray, groups: np.ndarray, n: int) -> sp.csr_matrix:
    """Sparse (n, n) matrix holding the group blocks b_inv at the rows/cols of each group."""
    valid = groups >= 0
    vi = valid[:, :, None] & valid[:, None, :]
    rows = np.broadcast_to(groups[:, :, None], b_inv.shape)[vi]
    cols = np.broadcast_to(groups[:, None, :], b_inv.shape)[vi]
    return sp.csr_matrix((b_inv[vi], (rows, cols)), shape=(n, n))
