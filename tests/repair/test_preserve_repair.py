"""The preserve set (drawdown guard): lazy preserve rows reach the optimum of the LP with every row, the saved
model keeps every preserve image, a tampered model is rejected, conflicts are infeasible with advice, and the
preserve set never overlaps the edit or held-out images."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from alexnet_repair.editsets import build_editset, draw_preserve_set
from alexnet_repair.evaluate import margins_of
from alexnet_repair.repair import RepairConfig, preserve_set_for, repair, verify
from alexnet_repair.repair.lp import solve_points, solve_repair_lp
from alexnet_repair.repair.lp.network import original_network, points_fixed
from instances import make_instance


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


@pytest.fixture
def edit_and_preserve(fitted_model, cifar_test, cifar_train):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=10, progress=False)
    preserve = draw_preserve_set(fitted_model, cifar_train, 40, margin=0.1, seed=0)
    return es, preserve


def test_repair_keeps_every_preserve_image(fitted_model, edit_and_preserve):
    es, preserve = edit_and_preserve
    config = RepairConfig(param_bound=5.0, margin=0.5, threads=1, preserve=len(preserve), preserve_margin=0.1)
    result = repair(fitted_model, es.images, es.labels, config, preserve=preserve)
    assert result.success, result.message
    with torch.no_grad():
        kept = margins_of(result.model(preserve.images), preserve.labels)
        fixed = margins_of(result.model(es.images), es.labels)
    assert float(kept.min()) >= 0.1 and float(fixed.min()) >= 0.5
    assert result.verification.preserve_kept == len(preserve) == result.preserve_size
    assert result.preserve_indices == preserve.indices.tolist()
    plain = repair(fitted_model, es.images, es.labels, RepairConfig(param_bound=5.0, margin=0.5, threads=1))
    with torch.no_grad():
        lost = int((margins_of(plain.model(preserve.images), preserve.labels) < 0.1).sum())
    assert lost > 0   # without the preserve rows the same repair loses some of them: the rows do work


def test_verify_rejects_a_model_that_loses_a_preserve_image(fitted_model, edit_and_preserve):
    es, preserve = edit_and_preserve
    config = RepairConfig(param_bound=5.0, margin=0.5, threads=1, preserve=len(preserve), preserve_margin=0.1)
    result = repair(fitted_model, es.images, es.labels, config, preserve=preserve)
    assert verify(fitted_model, result.model, es.images, es.labels, config, None, preserve=preserve).ok
    tampered = copy.deepcopy(result.model)
    with torch.no_grad():
        margins = margins_of(tampered(preserve.images), preserve.labels)
        p = int(margins.argmin())
        label = int(preserve.labels[p])
        tampered.classifier[6].bias[label] -= float(margins[p]) + 1.0   # one weight: the label's bias
    check = verify(fitted_model, tampered, es.images, es.labels, config, None, preserve=preserve)
    assert not check.ok and check.preserve_kept < len(preserve)
    assert any("preserve images lost" in r for r in check.reasons)


def test_conflict_with_the_preserve_set_is_infeasible_with_advice(fitted_model, cifar_test):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=4, progress=False)
    # the edit images themselves, under their predicted (wrong) labels, as preserve images: no repair can hold both
    with torch.no_grad():
        predicted = fitted_model(es.images).argmax(1)
    preserve = draw_preserve_set(fitted_model, cifar_test, 0)
    preserve.images, preserve.labels, preserve.indices = es.images, predicted, np.arange(len(es))
    config = RepairConfig(param_bound=5.0, margin=0.5, threads=1, preserve=len(es))
    result = repair(fitted_model, es.images, es.labels, config, preserve=preserve)
    assert result.status == "infeasible" and result.model is None
    assert "fewer --preserve images" in result.message and "--preserve-margin" in result.message


def test_preserve_set_never_overlaps_the_edit_or_held_out_images(fitted_model, cifar_test):
    es = build_editset(fitted_model, cifar_test, "misclassified", max_size=10, progress=False)
    config = RepairConfig(preserve=10_000, preserve_split="test")
    preserve = preserve_set_for(fitted_model, es, config, lambda split: cifar_test, seed=1)
    taken = set(es.indices.tolist()) | set(es.holdout_indices.tolist())
    assert len(preserve) > 0 and not taken & set(preserve.indices.tolist())
    with torch.no_grad():
        assert (fitted_model(preserve.images).argmax(1) == preserve.labels).all()
    again = preserve_set_for(fitted_model, es, RepairConfig(preserve=5, preserve_split="test"), lambda s: cifar_test,
                             seed=1)
    assert again.indices.tolist() == preserve.indices[:5].tolist()   # seeded: the same draw


@pytest.mark.parametrize("layer", ["classifier.6", "classifier.4"])
def test_the_draw_keeps_the_repaired_layers_inputs_of_its_images(fitted_model, cifar_train, layer):
    """The repair reuses the draw's own pass: the kept inputs are the float32 prefix's, bit for bit."""
    from alexnet_repair.repair.bridge import layer_inputs

    preserve = draw_preserve_set(fitted_model, cifar_train, 30, seed=2, layer=layer)
    kept = preserve.features.get(layer)
    assert kept is not None and kept.shape[0] == len(preserve) > 0
    assert torch.equal(kept, layer_inputs(fitted_model, preserve.images, layer, dtype=torch.float32))
    assert set(preserve.features) == {layer}
