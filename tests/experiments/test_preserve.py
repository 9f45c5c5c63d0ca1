"""Preserve sets in sweeps (--preserves): rows per preserve size whose saved models keep their preserve images,
ids of plain runs unchanged, stochastic chains that carry the preserve set, and CSVs written before the preserve
columns that still resume and merge."""

from __future__ import annotations

import csv
import json
from contextlib import chdir

import numpy as np
import pytest
import torch

import experiment_runner
from alexnet_repair.errors import DataError
from alexnet_repair.evaluate import margins_of
from alexnet_repair.experiments.csvstore import append_row, read_csv
from alexnet_repair.experiments.schema import COLUMNS, PRESERVE_COLUMNS, STOCHASTIC_COLUMNS
from alexnet_repair.model import load_checkpoint
from sweeptools import args_for, rows_of


def write_old_format(path, out) -> list[str]:
    """``path`` as a CSV of the toolkit before the preserve columns (they are dropped) written to ``out``."""
    header, rows = read_csv(path)
    old = [c for c in header if c not in PRESERVE_COLUMNS]
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, old, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return old


def test_rows_per_preserve_size_and_models_that_keep_them(preserve_sweep, cifar_train):
    rows = rows_of(preserve_sweep.csv)
    assert len(rows) == 8 and {r["preserve_size"] for r in rows} == {"0", "20"}
    for row in rows:
        plain = row["requested_preserve_size"] == "0"
        assert row["experiment_id"].endswith("_p20") != plain
        settings = (row["preserve_size"], row["preserve_margin"], row["preserve_split"])
        assert settings == (("0", "", "") if plain else ("20", "0.0", "train"))
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
    plain, = (rows for chain, rows in chains.items() if not chain.endswith("_p20"))
    preserved, = (rows for chain, rows in chains.items() if chain.endswith("_p20"))
    assert [r["iteration"] for r in plain] == ["1", "2", "3"] and plain[0]["preserve_size"] == ""   # resumed
    assert [r["iteration"] for r in preserved] == ["1", "2", "3"]
    assert all(r["requested_preserve_size"] == r["preserve_size"] == "20" for r in preserved)
    assert any(r["success"] == "True" for r in preserved)
    assert all(r["preserve_kept"] == "20" for r in preserved if r["success"] == "True")


def test_an_older_header_is_upgraded_and_a_foreign_one_refused(tmp_path):
    path = tmp_path / "log.csv"
    append_row(path, {"a": 1, "c": 2}, ["a", "c"])
    append_row(path, {"a": 3, "b": "x", "c": 4}, ["a", "b", "c"])
    assert path.read_text() == "a,b,c\n1,,2\n3,x,4\n"
    with pytest.raises(DataError, match="unknown: b"):      # an older writer never drops a newer file's column
        append_row(path, {"a": 5}, ["a", "c"])
    other = tmp_path / "other.csv"
    other.write_text("a,z\n1,2\n")
    with pytest.raises(DataError, match="other columns"):
        append_row(other, {"a": 1}, ["a", "b"])
    assert other.read_text() == "a,z\n1,2\n"
