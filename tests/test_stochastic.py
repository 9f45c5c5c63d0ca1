"""experiment_runner.py stochastic: sequential batch repairs, per-iteration resume, analyze_stochastic.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import analyze_stochastic
import experiment_runner
from alexnet_repair.data import load_split
from alexnet_repair.evaluate import predict
from alexnet_repair.model import load_checkpoint, save_checkpoint, small_alexnet
from alexnet_repair.stochastic import batch_schedule

VOLATILE = {"timestamp", "batch_repair_time", "build_time", "solve_time", "model_path"}


@pytest.fixture
def quiet_checkpoint(tmp_path, fitted_state):
    """conftest's fitted model with logits scaled by 0.01 (see tests/test_experiments.py: quiet_model)."""
    model = small_alexnet(16)
    model.load_state_dict(fitted_state)
    with torch.no_grad():
        model.classifier[6].weight.mul_(0.01)
        model.classifier[6].bias.mul_(0.01)
    return save_checkpoint(model, tmp_path / "quiet.pth")


def args_for(cifar_dir, weights, out, iterations) -> list[str]:
    return ["stochastic", "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--no-download", "--weights",
            str(weights), "--solver", "highs", "--threads", "1", "--quiet", "--batch-sizes", "3",
            "--repair-set-homogeneities", "misclassified", "--num-iterations", str(iterations), "--param-bound", "20",
            "--margin", "0.05", "--output-file", out]


def rows_of(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


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


def test_analyze_stochastic_outputs(workdir, cifar_dir, quiet_checkpoint, capsys):
    args = args_for(cifar_dir, quiet_checkpoint, "results/s.csv", 2)
    args[args.index("--batch-sizes") + 1:args.index("--batch-sizes") + 2] = ["2", "4"]
    args += ["--seeds", "0", "1"]
    assert experiment_runner.main(args) == 0
    assert len(rows_of("results/s.csv")) == 8
    assert analyze_stochastic.main(["results/s.csv", "--output-dir", "results/an"]) == 0
    out = Path("results/an")
    for name in ("summary.csv", "summary.md", "curves.csv", "report.html", "accuracy_over_iterations.png",
                 "repair_time_per_iteration.png", "batch_size_comparison.png"):
        assert (out / name).stat().st_size > 0, name
    summary = rows_of(out / "summary.csv")
    assert [(r["batch_size"], r["chains"]) for r in summary] == [("2", "2"), ("4", "2")]
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and html.count("data:image/png;base64,") == 3
    # a grid CSV is refused with a pointer to the right tool
    Path("results/grid.csv").write_text("experiment_id,schema\nx,alexnet_repair.sweep/1\n")
    assert analyze_stochastic.main(["results/grid.csv"]) == 2
    assert "missing columns" in capsys.readouterr().err
