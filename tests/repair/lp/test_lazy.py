"""The lazy-row loop (repair/lp/lazy.py): rows that join only when violated reach the optimum of the LP with every
row up front, in every formulation; a failed warm start between rounds is retried cold."""

from __future__ import annotations

import numpy as np
import pytest
from instances import make_instance

from alexnet_repair.repair.lp import solve_points, solve_repair_lp
from alexnet_repair.repair.lp.network import original_network, points_fixed


@pytest.mark.parametrize("dims, rows", [((48, 10), None), ((40, 24, 10), 12)])
@pytest.mark.parametrize("objective", ["linf+l1n", "l1"])
def test_lazy_preserve_rows_reach_the_full_lp_optimum(dims, rows, objective):
    spec = make_instance(8, dims, n_rows=rows, seed=3, objective=objective, param_bound=10.0, n_preserve=60,
                         preserve_margin=0.5)
    full = solve_points(spec.with_preserve_points(np.arange(spec.n_preserve)), formulation="straightforward")
    plain = solve_repair_lp(make_instance(8, dims, n_rows=rows, seed=3, objective=objective, param_bound=10.0),
                            formulation="straightforward")
    assert full.objective > plain.objective * (1 + 1e-6)     # the preserve rows bind: this is not the plain LP
    for formulation in ("straightforward", "colgen", "ipm", "auto"):
        sol = solve_repair_lp(spec, formulation=formulation)
        assert sol.objective == pytest.approx(full.objective, rel=1e-6), formulation
        assert 0 < sol.preserve_points <= spec.n_preserve
        if formulation in ("ipm", "auto") and len(dims) == 2:  # the IPM takes preserve rows one by one, certified
            assert sol.formulation == "ipm" and "certified" in sol.message, sol.message
            assert sol.preserve_rows < spec.n_preserve * (dims[-1] - 1)
        assert points_fixed(original_network(spec.preserve_only()), sol.dW, sol.db, 1e-7).all()


def test_a_failed_warm_start_is_retried_from_a_cold_one(monkeypatch, caplog):
    """A warm start only saves time: when a round's warm-started IPM makes no progress, the round is run again
    from the default start and the lazy rounds still reach the full LP's optimum, certified by the IPM."""
    import logging

    from alexnet_repair.repair.lp.ipm import certified

    spec = make_instance(8, (48, 10), seed=3, param_bound=10.0, n_preserve=60, preserve_margin=0.5)
    full = solve_points(spec.with_preserve_points(np.arange(spec.n_preserve)), formulation="straightforward")

    def hopeless(prev, keep, lp):  # a start no IPM recovers from (objective past 1e30): "no progress" at once
        if prev is None:
            return None
        n, m = lp.c.size, lp.b.size
        return np.full(n, 1e31), np.ones(n), np.zeros(m), np.ones(n), np.ones(n)

    monkeypatch.setattr(certified, "round_start", hopeless)
    with caplog.at_level(logging.INFO, logger="alexnet_repair.repair.lp.ipm.certified"):
        sol = solve_repair_lp(spec, formulation="ipm")
    assert "again from a cold one" in caplog.text             # a later round was warm-started, and it failed
    assert sol.formulation == "ipm" and "certified" in sol.message, sol.message
    assert sol.objective == pytest.approx(full.objective, rel=1e-6)
