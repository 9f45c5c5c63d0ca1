"""Structured normal equations ``A diag(theta) A^T y = r`` for the IPM (mehrotra.py).

Columns of A: W = weight changes, never materialised: W+[r, j] (n_r, d) then W-[r, j], with
-a[i, j] / +a[i, j] in the D row of (point i, block r) (the D rows, first n_D rows: every pair (i, r) by
default, in the order i * n_r + r, or the pairs ``d_pairs`` lists: a preserve point needs D rows only in the
blocks its rows touch); ``a`` includes a ones column when the bias is edited like a weight. Then X = every other column, sparse,
and one dense column ``t`` (the inf-norm level).

Rows: D, then O (the rest); E = a subset of O whose part of X^T diag X^T is diagonal (the
epigraph rows: each touches only its own v+/v-/slack, plus t). Optionally, as the last n_r * d
rows, the weight epigraph rows Ew: W+[r, j] + W-[r, j] + e_w[r, j] - t = 0 (|dW| <= t), which
couple only to the D rows of their own block r; eliminating them (diagonal) changes K_r's
diagonal weights and keeps every block N x N. Elimination order:
1. t by Sherman-Morrison; 2. E (diagonal); 3. either D block by block (dense N x N blocks K_r = a_r
diag(theta_r) a_r^T over the points a_r of block r, padded to one size) and a dense Schur complement on O
("schur-o"; a margin row meets one D row per block, so its update is a gather from K_r^-1), or O group by group
(O must split into small independent groups, e.g. per point) and a dense D system ("schur-d"). ``choose_mode``
picks the cheaper.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as la
import scipy.linalg.blas as blas
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from alexnet_repair.repair.lp.ipm.blocks import block_diag, choose_mode, group_blocks, spd_inverse, symmetric


class BlockOperator:
    def __init__(self, a: np.ndarray, n_r: int, ax: sp.csc_matrix, t_col: int | None, e_mask: np.ndarray,
                 mode: str = "auto", reg: float = 1e-11, weight_epigraph: bool = False, d_pairs=None):
        self.a = a
        self.n_pts, self.d = a.shape
        self.n_r, self.reg = n_r, reg
        if d_pairs is None:
            d_pairs = np.divmod(np.arange(self.n_pts * n_r), n_r)
        self.d_pt, self.d_r = (np.asarray(v, dtype=np.int64) for v in d_pairs)
        self.n_d = self.d_pt.size
        self.full = self.n_d == self.n_pts * n_r and bool((self.d_pt * n_r + self.d_r == np.arange(self.n_d)).all())
        counts = np.bincount(self.d_r, minlength=n_r)
        order = np.argsort(self.d_r, kind="stable")
        self.pos = np.empty(self.n_d, dtype=np.int64)  # each D row's place in its block
        self.pos[order] = np.arange(self.n_d) - np.repeat(np.cumsum(counts) - counts, counts)
        self.blk = np.full((n_r, counts.max(initial=0)), -1)  # (n_r, m) D rows of block r, -1 padded
        self.blk[self.d_r, self.pos] = np.arange(self.n_d)
        self.blk_ok = self.blk >= 0
        self.blk_n = counts
        self._K = self._scaled = None  # _gram_blocks' arrays, kept from one factorisation to the next
        self.n_w = 2 * n_r * self.d
        self.ax = sp.csc_matrix(ax)
        self.ax_t = self.ax.T.tocsr()
        self.n_rows = ax.shape[0]
        self.n = self.n_w + ax.shape[1]
        self.t_col = t_col
        self.n_ew = n_r * self.d if weight_epigraph else 0  # the Ew rows: the last n_ew rows of ax
        self.main = self.n_rows - self.n_ew                 # rows before them
        mask = np.ones(ax.shape[1])
        if t_col is not None:
            self.a_t = self.ax[:, t_col].toarray().ravel()
            mask[t_col] = 0.0
        self.ax0 = (self.ax @ sp.diags(mask)).tocsr()[: self.main]
        e_mask = np.asarray(e_mask)[: self.main]
        if self.n_ew:
            self.ew_cols = self.ax[self.main:].tocsr() @ sp.diags(mask)
            assert (self.ew_cols.getnnz(1) == 1).all(), "each Ew row holds one slack column besides t"
            self.ew_col = self.ew_cols.indices
        self.e_idx = np.flatnonzero(e_mask)
        self.f_idx = np.flatnonzero(~e_mask)  # D rows first, then the other O rows
        assert (self.f_idx[: self.n_d] == np.arange(self.n_d)).all(), "E rows must lie after the D rows"
        self.n_o = self.f_idx.size - self.n_d
        xe = self.ax0[self.e_idx]
        assert (abs(xe) @ abs(xe).T).nnz == self.e_idx.size, "each X column may touch at most one E row"
        pattern = self._reduced(np.ones(ax.shape[1]))[0]
        n_groups, gid = connected_components(abs(pattern[self.n_d:, self.n_d:]) > 0, directed=False)
        sizes = np.bincount(gid, minlength=n_groups)
        n_coupled = np.unique(pattern[: self.n_d, self.n_d:].tocsr().indices).size
        self.mode = choose_mode(self.blk.shape[1], n_r, self.n_o, n_coupled, sizes.max(initial=0)) if mode == "auto" else mode
        order = np.argsort(gid, kind="stable")
        self.g_size = sizes.max(initial=0)
        self.groups = np.full((n_groups, self.g_size), -1)
        starts = np.cumsum(sizes) - sizes
        self.groups[gid[order], np.arange(order.size) - starts[gid[order]]] = order

    @property
    def factor_flops(self) -> float:
        """Rough flops of one factorisation: the Gram blocks and the dense Schur system."""
        m = self.blk.shape[1]
        return self.n_r * m * m * self.d + (self.n_o if self.mode == "schur-o" else self.n_d) ** 3 / 3

    def matvec(self, x: np.ndarray) -> np.ndarray:
        dw = (x[: self.n_w // 2] - x[self.n_w // 2: self.n_w]).reshape(self.n_r, self.d)
        out = self.ax @ x[self.n_w:]
        out[: self.n_d] -= self._at_d(self.a @ dw.T)
        if self.n_ew:
            out[self.main:] += x[: self.n_w // 2] + x[self.n_w // 2: self.n_w]
        return out

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        g = (self._grid(y[: self.n_d]).T @ self.a).ravel()
        yw = y[self.main:] if self.n_ew else 0.0
        return np.concatenate([-g + yw, g + yw, self.ax_t @ y])

    def _at_d(self, grid: np.ndarray) -> np.ndarray:
        """(n_pts, n_r) values -> the D rows' entries."""
        return grid.ravel() if self.full else grid[self.d_pt, self.d_r]

    def _grid(self, yd: np.ndarray) -> np.ndarray:
        """The D rows' entries -> (n_pts, n_r), zero where a point is not in a block."""
        if self.full:
            return yd.reshape(self.n_pts, self.n_r)
        out = np.zeros((self.n_pts, self.n_r))
        out[self.d_pt, self.d_r] = yd
        return out

    def _reduced(self, thx: np.ndarray):
        """(G = H_FF - H_FE diag(1/d_E) H_EF over the F rows, d_E, H_FE) for H = X diag(thx) X^T (t excluded)."""
        xs = (self.ax0 @ sp.diags(np.sqrt(thx))).tocsr()
        xf, xe = xs[self.f_idx], xs[self.e_idx]
        d_e = np.asarray(xe.multiply(xe).sum(1)).ravel()
        d_e += self.reg * max(d_e.max(initial=0.0), 1.0)
        h_fe = (xf @ xe.T).tocsr()
        g = (xf @ xf.T - h_fe @ sp.diags(1.0 / d_e) @ h_fe.T).tocsr()
        return g, d_e, h_fe

    def factor(self, theta: np.ndarray) -> None:
        n_r, n_d = self.n_r, self.n_d
        tp, tm = theta[: self.n_w // 2], theta[self.n_w // 2: self.n_w]
        th = (tp + tm).reshape(n_r, self.d)
        if self.n_ew:  # eliminate the Ew rows: diagonal d_w, coupling g = theta- - theta+ to block r's D rows
            te = theta[self.n_w + self.ew_col]
            te = te + self.reg * max((tp + tm + te).max(initial=0.0), 1.0)  # regularised like d_E and K
            self.d_w = tp + tm + te
            self.g_w = tm - tp
            # (tp + tm) - g_w^2 / d_w, written without the cancellation: (tp+tm)^2 - (tm-tp)^2 = 4 tp tm
            th = ((4 * tp * tm + (tp + tm) * te) / self.d_w).reshape(n_r, self.d)
        K, m = self._gram_blocks(th), self.blk.shape[1]
        g, self.d_e, self.h_fe = self._reduced(theta[self.n_w:])
        gdd = g[:n_d, :n_d].tocoo()
        r_of = self.d_r[gdd.row]
        assert (r_of == self.d_r[gdd.col]).all(), "the D rows must stay block diagonal over r"
        np.add.at(K, (r_of, self.pos[gdd.row], self.pos[gdd.col]), gdd.data)
        K[:, np.arange(m), np.arange(m)] += self.reg * np.maximum(np.einsum("rii->ri", K).max(1), 1.0)[:, None]
        self.g_do = g[:n_d, n_d:].tocsr()
        self.g_od = self.g_do.T.tocsr()
        if self.mode == "schur-o":
            self.K_inv = spd_inverse(K, self.blk_n)
            S = g[n_d:, n_d:].toarray()
            self._schur_o_update(S)
            S[np.diag_indices_from(S)] += self.reg * max(np.abs(np.diag(S)).max(initial=0.0), 1.0)
            self.S = la.cho_factor(S, lower=True, overwrite_a=True, check_finite=False)
        else:
            goo = g[n_d:, n_d:]
            gb = group_blocks(goo, self.groups)
            diag = np.einsum("gii->gi", gb)
            diag += self.reg * np.maximum(diag.max(1, keepdims=True), 1.0)
            self.B_inv = np.linalg.inv(gb)
            dense = np.zeros((n_d, n_d))
            for r in range(n_r):
                k = self.blk_n[r]
                dense[np.ix_(self.blk[r, :k], self.blk[r, :k])] = symmetric(K[r, :k, :k])
            corr = (self.g_do @ block_diag(self.B_inv, self.groups, self.n_o) @ self.g_od).tocoo()
            dense[corr.row, corr.col] -= corr.data
            dense[np.diag_indices_from(dense)] += self.reg * max(np.abs(np.diag(dense)).max(initial=0.0), 1.0)
            self.Dc = la.cho_factor(dense, lower=True, overwrite_a=True, check_finite=False)
        if self.t_col is not None:
            self.theta_t = theta[self.n_w + self.t_col]
            self.w_t = self._solve0(self.a_t)
            self.den_t = 1.0 / self.theta_t + self.a_t @ self.w_t

    def _schur_o_update(self, S: np.ndarray) -> None:
        """S -= G_od K^-1 G_do over the O rows coupled to D rows (K block diagonal over r, K_inv set)."""
        n_r, n_d, gd = self.n_r, self.n_d, self.g_do.tocoo()
        block = self.d_r[gd.row]
        if np.unique(gd.col * n_r + block).size == gd.nnz:  # an O row meets one D row per block, as margin
            for r in range(n_r):  # rows do: G_r^T K_r^-1 G_r is a gather from K_r^-1, no product
                sel = block == r
                cr, pr, vr = gd.col[sel], self.pos[gd.row[sel]], gd.data[sel]
                S[np.ix_(cr, cr)] -= np.outer(vr, vr) * self.K_inv[r][np.ix_(pr, pr)]
            return
        per_block = [np.unique(self.g_do[self.blk[r, :self.blk_n[r]]].indices) for r in range(n_r)]
        cols = np.unique(self.g_do.indices)  # O rows coupled to D at all
        if sum(c.size for c in per_block) < 0.5 * n_r * cols.size:  # blocks touch few O rows each
            for r, cr in enumerate(per_block):
                if cr.size:
                    k = self.blk_n[r]
                    sub = self.g_do[self.blk[r, :k]][:, cr]
                    S[np.ix_(cr, cr)] -= np.asarray(sub.T @ (self.K_inv[r, :k, :k] @ sub.toarray()))
        elif cols.size:  # all blocks touch the same rows: one batched product
            gdo = self.g_do[:, cols]
            dense = np.zeros((n_r, self.blk.shape[1], cols.size))
            dense[self.blk_ok] = gdo.toarray()[self.blk[self.blk_ok]]
            Z = np.empty((n_d, cols.size))
            Z[self.blk[self.blk_ok]] = np.matmul(self.K_inv, dense)[self.blk_ok]
            S[np.ix_(cols, cols)] -= np.asarray(gdo.T @ Z)

    def _gram_blocks(self, th: np.ndarray) -> np.ndarray:
        """(n_r, m, m) K_r = a_r diag(th_r) a_r^T over the points of block r, padded with the identity; only the
        upper triangle is set (the Cholesky reads no other). Into the last call's array: on this VM a fresh 80 MB
        array costs more page faults than its products."""
        m = self.blk.shape[1]
        if self._K is None:  # zero off the blocks once: nothing writes there (only the padding's diagonal)
            self._K, self._scaled = np.zeros((self.n_r, m, m)), np.empty((m, self.d))
        K = self._K
        for r in range(self.n_r):  # by a symmetric rank-k update (half the flops)
            k = self.blk_n[r]
            a_r = self.a if self.full else self.a[self.d_pt[self.blk[r, :k]]]
            np.multiply(a_r, np.sqrt(th[r]), out=self._scaled[:k])
            K[r, :k, :k] = blas.dsyrk(1.0, self._scaled[:k].T, trans=1, lower=0)  # (k, d)^T: no copy to F order
        K[~self.blk_ok[:, :, None] & np.eye(m, dtype=bool)] = 1.0  # padding: decoupled
        return K

    def _k_solve(self, rd):
        if self.full:
            v = rd.reshape(self.n_pts, self.n_r).T
            return np.matmul(self.K_inv, v[:, :, None])[:, :, 0].T.ravel()
        out = np.empty_like(rd)
        for r, k in enumerate(self.blk_n):  # block by block, unpadded: with preserve points the blocks differ in
            idx = self.blk[r, :k]            # size (one class's may hold most), and a padded product reads every block
            out[idx] = self.K_inv[r, :k, :k] @ rd[idx]  # at the largest one's size (10k real preserve images: 3x)
        return out

    def _g_solve(self, ro):  # O rows, block diagonal over groups
        gi = np.where(self.groups >= 0, self.groups, 0)
        v = np.where(self.groups >= 0, ro[gi], 0.0)
        out = np.zeros_like(ro)
        res = np.einsum("gij,gj->gi", self.B_inv, v)
        out[self.groups[self.groups >= 0]] = res[self.groups >= 0]
        return out

    def _solve_f(self, rf):
        rd, ro = rf[: self.n_d], rf[self.n_d:]
        if self.mode == "schur-o":
            yo = la.cho_solve(self.S, ro - self.g_od @ self._k_solve(rd), check_finite=False)
            yd = self._k_solve(rd - self.g_do @ yo)
        else:
            yd = la.cho_solve(self.Dc, rd - self.g_do @ self._g_solve(ro), check_finite=False)
            yo = self._g_solve(ro - self.g_od @ yd)
        return np.concatenate([yd, yo])

    def _solve0(self, r):
        if not self.n_ew:
            return self._solve_main(r)
        rw = r[self.main:] / self.d_w                           # Ew rows, eliminated first
        rm = r[: self.main].copy()
        rm[: self.n_d] -= self._at_d(self.a @ (self.g_w * rw).reshape(self.n_r, self.d).T)
        ym = self._solve_main(rm)
        yd = self._grid(ym[: self.n_d]).T                        # (n_r, N)
        yw = rw - self.g_w * (yd @ self.a).ravel() / self.d_w
        return np.concatenate([ym, yw])

    def _solve_main(self, r):
        out = np.empty_like(r)
        re = r[self.e_idx] / self.d_e
        yf = self._solve_f(r[self.f_idx] - self.h_fe @ re)
        out[self.f_idx] = yf
        out[self.e_idx] = re - (self.h_fe.T @ yf) / self.d_e
        return out

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        y = self._solve0(rhs)
        if self.t_col is not None:
            y -= self.w_t * (self.a_t @ y) / self.den_t
        return y
