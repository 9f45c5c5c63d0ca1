"""experiment_runner.py stochastic: sequential batch repairs, per-iteration resume, chains that carry a preserve set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sweeptools import args_for, rows_of, write_old_format

import experiment_runner
from alexnet_repair.data import load_split
from alexnet_repair.evaluate import predict
from alexnet_repair.experiments.csvstore import read_csv
from alexnet_repair.experiments.schema import STOCHASTIC_COLUMNS
from alexnet_repair.experiments.stochastic import batch_schedule
from alexnet_repair.model import load_checkpoint

VOLATILE = {"timestamp", "batch_repair_time", "build_time", "solve_time", "model_path"}


def test_three_iterations_chain_and_resume(workdir, cifar_dir, quiet_checkpoint):
    assert experiment_runner.main(args_for(cifar_dir, quiet_checkpoint, "results/a.csv", 3)) == 0
    rows = rows_of("results/a.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert len({r["experiment_id"] for r in rows}) == 1
    assert any(r["success"] == "True" for r in rows)
    # the full set is every misclassified test image; batches follow the documented schedule
    model = load_checkpoint(quiet_checkpoint)
    test = load_split("cifar10", "test", cifar_dir, download=False)
    base = predict(model, test, progress=False)
    full = np.flatnonzero(base.preds != base.labels)
    assert int(rows[0]["full_set_size"]) == len(full)
    order = full[np.random.default_rng(0).permutation(len(full))]
    for row, pick in zip(rows, batch_schedule(len(full), 3, 3, seed=0)):
        assert json.loads(row["batch_indices"]) == order[pick].tolist()
    # the last successful model, as saved, gives the recorded accuracies
    last = [r for r in rows if r["success"] == "True"][-1]
    final = predict(load_checkpoint(last["model_path"]), test, progress=False)
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(final.accuracy())
    assert float(rows[-1]["full_repair_accuracy"]) == pytest.approx(final.accuracy(np.isin(final.indices, full)))
    assert float(rows[0]["baseline_full_repair_accuracy"]) == 0.0
    assert len(list(Path(last["model_path"]).parent.glob("iter_*.pth"))) == 1     # earlier models pruned
    # two iterations, then a rerun asking for three, continue the chain to the same rows
    assert experiment_runner.main(args_for(cifar_dir, quiet_checkpoint, "results/b.csv", 2)) == 0
    assert len(rows_of("results/b.csv")) == 2
    assert experiment_runner.main(args_for(cifar_dir, quiet_checkpoint, "results/b.csv", 3)) == 0
    resumed = rows_of("results/b.csv")
    assert len(resumed) == 3
    for a, b in zip(rows, resumed):
        assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}
    # a finished chain is skipped
    before = Path("results/b.csv").read_bytes()
    assert experiment_runner.main(args_for(cifar_dir, quiet_checkpoint, "results/b.csv", 3)) == 0
    assert Path("results/b.csv").read_bytes() == before


def test_batch_schedule_reshuffles_when_exhausted():
    batches = batch_schedule(5, 2, 4, seed=3)
    assert [len(b) for b in batches] == [2, 2, 2, 2]
    assert len(set(np.concatenate(batches[:2]).tolist())) == 4        # one pass: no repeats
    assert batch_schedule(2, 5, 1, seed=0)[0].tolist() == [0, 1]        # batch larger than the set: all of it


def test_stochastic_chains_carry_the_preserve_set_and_old_csvs_resume(workdir, cifar_dir, quiet_checkpoint):
    assert experiment_runner.main(args_for(cifar_dir, quiet_checkpoint, "results/s.csv", 2)) == 0
    write_old_format("results/s.csv", "results/s.csv")          # (in place: the chain's models go with its CSV)
    assert experiment_runner.main([*args_for(cifar_dir, quiet_checkpoint, "results/s.csv", 3),
                                   "--preserves", "0", "20"]) == 0
    header, rows = read_csv("results/s.csv")
    assert header == STOCHASTIC_COLUMNS
    chains = {}
    for row in rows:
        chains.setdefault(row["experiment_id"], []).append(row)
    plain, = (rows for chain, rows in chains.items() if not chain.endswith("_p20_d2"))
    preserved, = (rows for chain, rows in chains.items() if chain.endswith("_p20_d2"))
    assert [r["iteration"] for r in plain] == ["1", "2", "3"] and plain[0]["preserve_size"] == ""   # resumed
    assert [r["iteration"] for r in preserved] == ["1", "2", "3"]
    assert all(r["requested_preserve_size"] == r["preserve_size"] == "20" for r in preserved)
    assert any(r["success"] == "True" for r in preserved)
    assert all(r["preserve_kept"] == "20" for r in preserved if r["success"] == "True")
