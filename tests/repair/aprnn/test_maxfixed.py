"""Best-effort repair (repair.maxfixed): the MILP finds the brute-force maximum of fixable points, its big-M is
valid, and a max-fixed repair of a model saves a model that fixes exactly that subset."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import run_repair
from alexnet_repair.evaluate import margins_of
from alexnet_repair.model import load_checkpoint, save_checkpoint
from alexnet_repair.repair import RepairConfig, repair
from alexnet_repair.repair.lp import network as blocks
from alexnet_repair.repair.bridge import lp_spec
from alexnet_repair.repair.lp import LPSpec, solve_repair_lp
from alexnet_repair.repair.lp.milp import change_bounds, max_fixed_subset
from alexnet_repair.solvers import SolveOptions, Status


def _feasible(spec: LPSpec, subset) -> bool:
    sub = replace(spec, inputs=spec.inputs[list(subset)], targets=spec.targets[list(subset)])
    return solve_repair_lp(sub, solver="highs", formulation="straightforward").status == Status.OPTIMAL


def brute_force(spec: LPSpec) -> tuple[int, list[tuple]]:
    """(largest k with a feasible k-subset, every feasible subset of that size)."""
    n = len(spec.targets)
    for k in range(n, 0, -1):
        best = [s for s in itertools.combinations(range(n), k) if _feasible(spec, s)]
        if best:
            return k, best
    return 0, []


def tiny_spec(seed: int, n_layers: int, rows=None) -> LPSpec:
    """6 points through ``n_layers`` random layers (5 -> 4 -> ... -> 3 classes); points 0 and 1 coincide with
    different targets, so no repair fixes both and the full LP is infeasible."""
    rng = np.random.default_rng(seed)
    dims = [5, 4, 4, 3][-(n_layers + 1):]
    weights = [rng.normal(size=(dims[i + 1], dims[i])) for i in range(n_layers)]
    biases = [0.5 * rng.normal(size=dims[i + 1]) for i in range(n_layers)]
    x = np.abs(rng.normal(size=(6, dims[0])))
    x[1] = x[0]
    t = rng.integers(0, dims[-1], 6)
    t[1] = (t[0] + 1) % dims[-1]
    return LPSpec(x, t, weights, biases, rows=rows, param_bound=0.3, margin=0.5)


@pytest.mark.parametrize("seed, n_layers, rows", [(0, 1, None), (1, 2, [0, 2]), (2, 3, None), (3, 2, None)])
def test_milp_finds_the_brute_force_maximum(seed, n_layers, rows):
    spec = tiny_spec(seed, n_layers, rows)
    best, subsets = brute_force(spec)
    assert 0 < best < 6 and not _feasible(spec, range(6))
    sol = max_fixed_subset(spec, "highs")
    assert sol.status == Status.OPTIMAL and sol.gap == pytest.approx(0, abs=1e-6)
    assert sol.claimed == best and round(sol.bound) == best
    assert tuple(np.flatnonzero(sol.fixed)) in subsets


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_big_m_bounds_hold_for_every_change_in_the_box(n_layers):
    spec = tiny_spec(5, n_layers, rows=[1, 3] if n_layers > 1 else None)
    net = blocks.original_network(spec)
    bounds = change_bounds(net, spec.param_bound)
    rng = np.random.default_rng(0)
    n_r, n_in = net.rows.size, spec.inputs.shape[1]
    for _ in range(200):  # random corners and interior points of the box
        pick = rng.choice([-1.0, 1.0, rng.uniform(-1, 1)])
        dW = spec.param_bound * np.sign(rng.normal(size=(n_r, n_in))) * abs(pick)
        db = [spec.param_bound * rng.uniform(-1, 1, size=n_r)] + [
            spec.param_bound * np.sign(rng.normal(size=w.shape[0])) for w in spec.weights[1:]]
        u = spec.inputs @ dW.T + db[0]
        assert (np.abs(u) <= bounds[0][:, net.rows] + 1e-9).all()
        for dz, bound in zip(blocks.propagate(net, u, db) if n_layers > 1 else [], bounds[1:]):
            assert (np.abs(dz) <= bound + 1e-9).all()


@pytest.fixture
def conflicted(fitted_model, cifar_test, fitted_test_preds):
    """5 images the fitted model gets wrong plus a copy of the first with another label: (images, labels)."""
    wrong = np.flatnonzero(fitted_test_preds != cifar_test.labels.numpy())[:5]
    images, labels = cifar_test.inputs(wrong), cifar_test.labels[wrong].clone()
    images = torch.cat([images, images[:1]])
    labels = torch.cat([labels, ((labels[:1] + 1) % 10)])
    return images, labels


def test_max_fixed_repair_saves_a_model_fixing_exactly_the_subset(tmp_path, fitted_model, conflicted):
    images, labels = conflicted
    config = RepairConfig(margin=0.5, param_bound=0.2, solver="highs", on_infeasible="max-fixed", threads=1)
    spec = lp_spec(fitted_model, images, labels, config, None)
    best, subsets = brute_force(spec)
    assert not repair(fitted_model, images, labels, replace(config, on_infeasible="fail")).success
    result = repair(fitted_model, images, labels, config)
    assert result.status == "partial" and not result.success, result.message
    assert result.fixed_count == best < len(labels)
    fixed = sorted(set(range(len(labels))) - set(result.unfixable_indices))
    assert tuple(fixed) in subsets
    assert result.unfixable_labels == labels[result.unfixable_indices].tolist()
    assert result.verification.ok and result.verification.required == best
    assert result.details["proven_maximum"] and result.record()["fixed_count"] == best
    saved = load_checkpoint(save_checkpoint(result.model, tmp_path / "partial.pth"))
    with torch.no_grad():
        margins = margins_of(saved(images), labels)
    assert (margins[fixed] >= 0.5).all() and (margins[result.unfixable_indices] < 0.5).all()


def test_infeasible_without_max_fixed_says_what_to_try(fitted_model, conflicted):
    images, labels = conflicted
    result = repair(fitted_model, images, labels, RepairConfig(margin=0.5, param_bound=0.2, solver="highs"))
    assert result.status == "infeasible" and result.fixed_count is None
    for hint in ("--param-bound", "--margin", "--layer", "--on-infeasible max-fixed"):
        assert hint in result.message


def test_run_repair_max_fixed_reports_unfixable(workdir, capsys, fitted_checkpoint, conflicted):
    images, labels = conflicted
    pt = workdir / "data/edit_sets/misclassified_edit_dataset.pt"  # the earlier toolkit's (images, labels) file
    torch.save((images, labels), pt)
    out = workdir / "artifacts/partial.pth"
    argv = ["--edit-set", str(pt), "--weights", str(fitted_checkpoint), "--margin", "0.5", "--param-bound", "0.2",
            "--solver", "highs", "--on-infeasible", "max-fixed", "--output", str(out), "--no-eval", "--json"]
    code = run_repair.main(argv)
    captured = capsys.readouterr()
    assert captured.out.strip(), captured.err
    rec = json.loads(captured.out)
    assert code == 1 and rec["status"] == "partial" and out.exists() and "partial:" in captured.err
    assert rec["fixed_count"] + len(rec["unfixable_indices"]) == 6
    assert [u["class"] for u in rec["unfixable"]] == rec["unfixable_labels"]


@pytest.mark.gurobi
def test_gurobi_milp_agrees_with_highs():
    from alexnet_repair.solvers import available_backends

    if available_backends()["gurobi"].startswith("unavailable"):
        pytest.skip(f"gurobi: {available_backends()['gurobi']}")
    spec = tiny_spec(1, 2, [0, 2])
    highs, gurobi = max_fixed_subset(spec, "highs"), max_fixed_subset(spec, "gurobi")
    assert gurobi.backend == "gurobi" and gurobi.status == Status.OPTIMAL
    assert gurobi.claimed == highs.claimed and int(gurobi.fixed.sum()) == highs.claimed


def test_time_limited_milp_reports_its_incumbent_and_gap():
    spec = tiny_spec(2, 3)
    sol = max_fixed_subset(spec, "highs", SolveOptions(time_limit=1e-3))
    assert sol.status in (Status.OPTIMAL, Status.TIME_LIMIT)
    if sol.status == Status.TIME_LIMIT and sol.fixed is not None:
        assert sol.gap is not None and sol.bound >= sol.claimed
