"""experiment_runner.py grid sweeps: real rows against a direct repair, kill -9 + resume, --jobs, shards, merge, the
--preserves dimension (rows whose models keep their preserve images; plain ids unchanged; old CSVs resume), the
--objectives dimension (ids _o<objective>, the default's unchanged)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from contextlib import chdir
from pathlib import Path

import numpy as np
import pytest
import torch
from sweeptools import common, rows_of, write_old_format

import experiment_runner
from alexnet_repair.data import DataSource, load_split
from alexnet_repair.editsets import SWEEP_TYPES, build_editset
from alexnet_repair.evaluate import evaluate_repair, margins_of
from alexnet_repair.experiments.csvstore import read_csv
from alexnet_repair.experiments.grid import build_grid
from alexnet_repair.experiments.plan import shard
from alexnet_repair.experiments.schema import COLUMNS, PRESERVE_COLUMNS
from alexnet_repair.model import load_checkpoint
from alexnet_repair.repair import RepairConfig
from alexnet_repair.repair import run_method as run_repair_method

ROOT = Path(__file__).resolve().parents[2]
# columns that legitimately differ between two runs of the same configuration
VOLATILE = {"timestamp", "repair_runtime_seconds", "build_time", "solve_time", "wall_time", "record_path"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cifar_dir, quiet_checkpoint):
    """One real 6-run sweep (tiny model, tiny CIFAR folder, HiGHS) shared by the tests below."""
    root = tmp_path_factory.mktemp("sweep")
    weights = quiet_checkpoint
    grid = [*common(cifar_dir, weights), "--repair-set-sizes", "3", "6", "--repair-set-types", "misclassified",
            "class_homogeneous_incorrect", "--target-classes", "3", "5", "--param-bound", "20", "--margin", "0.05"]
    args = [*grid, "--output-file", "results/exp.csv"]
    with chdir(root):
        assert experiment_runner.main(args) == 0
    return Namespace(root=root, weights=weights, grid=grid, args=args, csv=root / "results/exp.csv")


def test_sweep_rows_match_a_direct_repair(sweep, cifar_dir):
    rows = rows_of(sweep.csv)
    ids = [r["experiment_id"] for r in rows]
    assert sorted(ids) == sorted(s.experiment_id for s in build_grid(
        ["misclassified", "class_homogeneous_incorrect"], [3, 6], [3, 5], [20.0], [0.05], solver="highs"))
    assert len(set(ids)) == 6
    assert any(r["success"] == "True" for r in rows)
    model = load_checkpoint(sweep.weights)
    test = load_split("cifar10", "test", cifar_dir, download=False)
    for row in rows:
        kind, focus = SWEEP_TYPES[row["repair_set_type"]]
        target = int(row["target_class"]) if row["target_class"] else None
        editset = build_editset(model, test, kind, target_class=target, focus=focus or "incorrect",
                                max_size=int(row["requested_repair_set_size"]), holdout_fraction=0.5, seed=0,
                                progress=False)
        assert int(row["actual_repair_set_size"]) == len(editset)
        result = run_repair_method(model, editset, RepairConfig(param_bound=20.0, margin=0.05, solver="highs",
                                                                threads=1))
        assert row["status"] == result.status
        assert row["n_vars"] == str(result.n_vars) and row["nnz"] == str(result.nnz)
        assert float(row["baseline_accuracy_edit_set"]) == 0.0
        if not result.success:
            assert row["error_message"] == result.message and row["repaired_accuracy_test_set"] == ""
            continue
        metrics = evaluate_repair(model, result.model, editset, DataSource("cifar10", str(cifar_dir), False),
                                  quiet=True)
        for column, key in [("baseline_accuracy_test_set", "baseline_test_accuracy"),
                            ("repaired_accuracy_test_set", "repaired_test_accuracy"), ("drawdown", "drawdown"),
                            ("repaired_accuracy_drawdown_set", "repaired_drawdown_accuracy"),
                            ("generalization", "generalization"), ("holdout_size", "holdout_size")]:
            assert float(row[column]) == pytest.approx(metrics[key], abs=1e-9), column
        assert json.loads(row["per_class_change"]) == pytest.approx(metrics["per_class_change"], nan_ok=True)
        assert float(row["max_abs_change"]) == pytest.approx(result.verification.max_abs_change, rel=1e-9)
        assert float(row["saved_min_margin"]) >= 0.05
        assert float(row["repaired_accuracy_edit_set"]) == 100.0
        record = json.loads((sweep.root / row["record_path"]).read_text())
        assert record["editset"]["indices"] == editset.indices.tolist()


def test_rerun_skips_finished_runs(sweep, capsys):
    before = sweep.csv.read_bytes()
    with chdir(sweep.root):
        assert experiment_runner.main(sweep.args) == 0
    assert sweep.csv.read_bytes() == before
    assert "0 to run" in capsys.readouterr().err


def test_resume_after_kill_9(workdir, cifar_dir, quiet_checkpoint):
    args = [*common(cifar_dir, quiet_checkpoint), "--repair-set-sizes", "2", "3", "4",
            "--repair-set-types", "misclassified", "--param-bounds", "10", "20", "--margins", "0.05", "0.1",
            "--output-file", "results/exp.csv"]
    total = 12
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}   # reuse cached bytecode
    proc = subprocess.Popen([sys.executable, str(ROOT / "experiment_runner.py"), *args], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    csv_path = workdir / "results/exp.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(read_csv(csv_path)[1]) >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, partial = read_csv(csv_path)
    assert 1 <= len(partial) < total, proc.stderr.read().decode()[-2000:]
    kept = csv_path.read_text().splitlines()
    assert experiment_runner.main(args) == 0
    rows = rows_of(csv_path)
    assert len(rows) == total and len({r["experiment_id"] for r in rows}) == total
    assert csv_path.read_text().splitlines()[:len(kept)] == kept      # finished rows untouched


def test_jobs_2_gives_the_same_rows_as_jobs_1(sweep, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)   # spawned workers reuse cached bytecode
    with chdir(tmp_path):
        assert experiment_runner.main([*sweep.grid, "--output-file", "results/jobs2.csv", "--jobs", "2"]) == 0
    one = {r["experiment_id"]: r for r in rows_of(sweep.csv)}
    two = {r["experiment_id"]: r for r in rows_of(tmp_path / "results/jobs2.csv")}
    assert one.keys() == two.keys()
    for key in one:
        a = {k: v for k, v in one[key].items() if k not in VOLATILE}
        b = {k: v for k, v in two[key].items() if k not in VOLATILE}
        assert a == b, key


def test_shards_partition_the_grid_and_merge(sweep, tmp_path, capsys):
    grid = build_grid(["misclassified", "class_homogeneous_incorrect"], [1, 2, 3], [0, 4, 9], [1.0, 2.0],
                         [0.5], seeds=[0, 1])
    parts = [shard(grid, i, 4) for i in range(1, 5)]
    assert sorted(s.experiment_id for p in parts for s in p) == sorted(s.experiment_id for s in grid)
    assert sum(map(len, parts)) == len(grid) == len({s.experiment_id for s in grid})
    listed = []
    for i in (1, 2, 3):
        assert experiment_runner.main([*sweep.grid, "--output-file", str(sweep.csv), "--shard", f"{i}/3", "--list"]) == 0
        listed.append([line.split("\t")[0] for line in capsys.readouterr().out.splitlines()])
    assert sorted(sum(listed, [])) == sorted(r["experiment_id"] for r in rows_of(sweep.csv))
    # two shard CSVs (cut from the real sweep) merge back into the whole
    header, rows = read_csv(sweep.csv)
    for i, part in enumerate((rows[::2], rows[1::2])):
        with open(tmp_path / f"s{i}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(part)
    out = tmp_path / "merged.csv"
    assert experiment_runner.main(["merge", str(tmp_path / "s0.csv"), str(tmp_path / "s1.csv"), str(tmp_path / "s0.csv"),
                                   "--output-file", str(out)]) == 0
    assert sorted(map(str, rows_of(out))) == sorted(map(str, rows))


def test_retry_failed_replaces_the_failed_rows(workdir, cifar_dir, quiet_checkpoint):
    args = [*common(cifar_dir, quiet_checkpoint), "--repair-set-types", "misclassified",
            "class_homogeneous_incorrect", "--target-classes", "3", "--sizing", "strict", "--param-bound", "20",
            "--margin", "0.05", "--repair-set-sizes", "3", "15", "--output-file", "results/exp.csv", "--keep-models"]
    assert experiment_runner.main(args) == 0
    first = {r["experiment_id"]: r for r in rows_of("results/exp.csv")}
    kept = [r for r in first.values() if r["success"] == "True"]
    assert kept and all(load_checkpoint(r["repaired_model_path"]) is not None for r in kept)
    assert all(Path(r["repaired_model_path"]).parts[:2] == ("artifacts", "experiments") for r in kept)
    failed = [k for k, r in first.items() if r["success"] != "True"]
    assert any("strict sizing" in first[k]["error_message"] for k in failed)
    time.sleep(1.1)
    assert experiment_runner.main([*args, "--retry-failed"]) == 0
    second = {r["experiment_id"]: r for r in rows_of("results/exp.csv")}
    assert len(rows_of("results/exp.csv")) == len(first) == 4
    for key in first:
        assert (second[key]["timestamp"] != first[key]["timestamp"]) == (key in failed)


def test_other_setup_refuses_the_csv(sweep, capsys):
    with chdir(sweep.root):
        assert experiment_runner.main([*sweep.args, "--holdout-fraction", "0.25"]) == 2
    assert "another sweep setup" in capsys.readouterr().err


def test_usage_errors_are_one_line(workdir, capsys):
    assert experiment_runner.main(["--target-classes", "11", "--list"]) == 2
    assert experiment_runner.main(["--shard", "5/4", "--list"]) == 2
    assert experiment_runner.main(["--weights", "missing.pth", "--dataset", "synthetic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_missing_base_model_is_trained_first(workdir, cifar_dir, capsys):
    args = ["--dataset", "cifar10", "--data-dir", str(cifar_dir), "--no-download", "--width-scale", "16",
            "--repair-set-sizes", "2", "--repair-set-types", "class_homogeneous_incorrect", "--target-classes", "3",
            "--solver", "highs", "--threads", "1", "--quiet"]
    assert experiment_runner.main(args) == 0
    err = capsys.readouterr().err
    assert "no base model at artifacts/alexnet_base.pth: training" in err
    assert Path("artifacts/alexnet_base.pth").is_file() and Path("artifacts/alexnet_base.json").is_file()
    assert len(rows_of("results/experiment.csv")) == 1


def test_rows_per_preserve_size_and_models_that_keep_them(preserve_sweep, cifar_train):
    rows = rows_of(preserve_sweep.csv)
    assert len(rows) == 8 and {r["preserve_size"] for r in rows} == {"0", "20"}
    for row in rows:
        plain = row["requested_preserve_size"] == "0"
        assert row["experiment_id"].endswith("_p20_d2") != plain          # the default D = 2 is in the id
        settings = (row["preserve_size"], row["preserve_margin"], row["preserve_split"])
        assert settings == (("0", "", "") if plain else ("20", "2.0", "train"))
        assert (row["preserve_kept"] == "") == plain
    kept = [r for r in rows if r["method"] == "aprnn" and r["preserve_size"] == "20" and r["success"] == "True"]
    assert len(kept) == 2
    base = load_checkpoint(rows[0]["baseline_model_path"])
    for row in kept:
        assert row["preserve_kept"] == row["preserve_size"] == "20" and int(row["preserve_rows_added"]) > 0
        record = json.loads((preserve_sweep.root / row["record_path"]).read_text())
        indices = record["result"]["preserve_indices"]
        assert len(set(indices)) == 20
        images, labels = cifar_train.inputs(np.array(indices)), cifar_train.labels[indices]
        repaired = load_checkpoint(preserve_sweep.root / row["repaired_model_path"])
        with torch.no_grad():
            assert (base(images).argmax(1) == labels).all()                 # drawn among the base model's right ones
            assert float(margins_of(repaired(images), labels).min()) > 0     # and the saved repair keeps every one
    ft = [r for r in rows if r["method"] == "ft" and r["preserve_size"] == "20"]
    assert ft and all(r["preserve_rows_added"] == "0" and r["preserve_kept"] != "" for r in ft)   # measured only


def test_plain_ids_unchanged_and_an_old_csv_resumes_and_merges(preserve_sweep, tmp_path, capsys):
    with chdir(tmp_path):
        assert experiment_runner.main([*preserve_sweep.grid, "--output-file", "plain.csv"]) == 0
    plain = rows_of(tmp_path / "plain.csv")
    ids = {r["experiment_id"] for r in plain}
    assert "misclassified_n3_c-_b20_m0.05_l6_s0_aprnn_highs" in ids         # the id format of earlier sweeps
    assert ids == {r["experiment_id"] for r in rows_of(preserve_sweep.csv) if r["requested_preserve_size"] == "0"}
    # the CSV as the toolkit wrote it before the preserve columns: resumes, gets the new columns, old rows untouched
    old_header = write_old_format(tmp_path / "plain.csv", tmp_path / "old.csv")
    (tmp_path / "old_copy.csv").write_bytes((tmp_path / "old.csv").read_bytes())
    capsys.readouterr()
    with chdir(tmp_path):
        assert experiment_runner.main([*preserve_sweep.grid, "--preserves", "0", "20", "--output-file", "old.csv"]) == 0
    assert "4 already in old.csv, 4 to run" in capsys.readouterr().err
    header, rows = read_csv(tmp_path / "old.csv")
    assert header == COLUMNS and len(rows) == 8
    for before, after in zip(plain, rows[:4]):
        assert {c: after[c] for c in old_header} == {c: before[c] for c in old_header}
        assert all(after[c] == "" for c in PRESERVE_COLUMNS)
    assert [r["preserve_size"] for r in rows[4:]] == ["20"] * 4
    # an old-format shard and a new one merge into the new columns, one row per run
    out = tmp_path / "merged.csv"
    assert experiment_runner.main(["merge", str(tmp_path / "old_copy.csv"), str(preserve_sweep.csv),
                                   "--output-file", str(out)]) == 0
    header, merged = read_csv(out)
    assert header == COLUMNS and len(merged) == 8
    assert {r["experiment_id"] for r in merged} == {r["experiment_id"] for r in rows_of(preserve_sweep.csv)}


def test_objectives_are_a_dimension_of_the_lp_runs(workdir, cifar_dir, quiet_checkpoint, capsys):
    args = [*common(cifar_dir, quiet_checkpoint), "--repair-set-sizes", "3", "--repair-set-types", "misclassified",
            "--param-bound", "20", "--margin", "0.05", "--methods", "aprnn", "ft", "--output-file", "results/o.csv"]
    assert experiment_runner.main([*args, "--objectives", "linf+l1n", "l1"]) == 0
    rows = {r["experiment_id"]: r for r in rows_of("results/o.csv")}
    plain = "misclassified_n3_c-_b20_m0.05_l6_s0_aprnn_highs"       # the id of earlier sweeps, unchanged
    assert sorted(rows) == [plain, f"{plain}_ol1", "misclassified_n3_c-_b20_m0.05_l6_s0_ft_highs"]
    assert [rows[k]["objective"] for k in sorted(rows)] == ["linf+l1n", "l1", ""]     # fine-tuning has none
    for key, objective in [(plain, "linf+l1n"), (f"{plain}_ol1", "l1")]:
        record = json.loads(Path(rows[key]["record_path"]).read_text())
        assert record["spec"]["objective"] == record["result"]["config"]["objective"] == objective
    assert {rows[k]["success"] for k in (plain, f"{plain}_ol1")} == {"True"}
    assert rows[plain]["objective_value"] != rows[f"{plain}_ol1"]["objective_value"]
    # --objective (one value) is the same dimension: the default resumes into this CSV, l1 alone lists its runs
    capsys.readouterr()
    assert experiment_runner.main([*args, "--objective", "linf+l1n"]) == 0
    assert "0 to run" in capsys.readouterr().err
    assert experiment_runner.main([*args, "--objective", "l1", "--list"]) == 0
    ft = "misclassified_n3_c-_b20_m0.05_l6_s0_ft_highs"
    assert capsys.readouterr().out.split() == [f"{plain}_ol1", rows[f"{plain}_ol1"]["status"], ft, rows[ft]["status"]]
