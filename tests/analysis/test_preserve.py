"""analysis.py on a sweep with preserve sets: the APRNN / APRNN+preserve / fine-tuning table against the CSV rows,
the drawdown-vs-preserve-size plot, and one-line notes where a sweep has one preserve size or none (old CSVs)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import analysis
from alexnet_repair.experiments.schema import PRESERVE_COLUMNS
from sweeptools import rows_of


def test_preserve_table_and_plot(preserve_sweep, tmp_path, capsys):
    out = tmp_path / "an"
    assert analysis.main([str(preserve_sweep.csv), "--output-dir", str(out), "--contact-sheets", "0"]) == 0
    table = {r["method"]: r for r in rows_of(out / "preserve.csv")}
    assert list(table) == ["APRNN", "APRNN+preserve 20", "fine-tuning", "fine-tuning+preserve 20"]
    rows = rows_of(preserve_sweep.csv)
    for label, method, size in [("APRNN", "aprnn", "0"), ("APRNN+preserve 20", "aprnn", "20"),
                                ("fine-tuning", "ft", "0"), ("fine-tuning+preserve 20", "ft", "20")]:
        runs = [r for r in rows if r["method"] == method and r["requested_preserve_size"] == size]
        line = table[label]
        assert int(line["runs"]) == len(runs) == 2
        assert float(line["success_rate"]) == pytest.approx(100 * np.mean([r["success"] == "True" for r in runs]))
        assert float(line["mean_drawdown"]) == pytest.approx(np.mean([float(r["drawdown"]) for r in runs]))
        assert float(line["mean_generalization"]) == pytest.approx(np.mean([float(r["generalization"]) for r in runs]))
        assert float(line["mean_repair_time_s"]) == pytest.approx(
            np.mean([float(r["repair_runtime_seconds"]) for r in runs]))
        kept = sum(int(r["preserve_kept"]) for r in runs if r["preserve_kept"])
        assert (line["preserve_kept_pct"] or None) == (None if size == "0" else str(100.0 * kept / 40))
    assert table["APRNN+preserve 20"]["preserve_kept_pct"] == "100.0"
    assert "| APRNN+preserve 20 |" in (out / "preserve.md").read_text()
    pixels = np.asarray(Image.open(out / "preserve.png").convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.std() > 5
    html = (out / "report.html").read_text()
    assert "APRNN / APRNN+preserve / fine-tuning" in html and 'alt="preserve"' in html and "skipped" not in html
    assert "| fine-tuning+preserve 20 |" in capsys.readouterr().out


@pytest.mark.parametrize("keep, note", [
    ("20", "preserve plot skipped: every run has preserve size 20"),
    ("old", "preserve table and plot skipped: no run had a preserve set"),
])
def test_one_preserve_size_or_none_is_a_note(preserve_sweep, tmp_path, capsys, keep, note):
    with open(preserve_sweep.csv, newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    if keep == "old":      # the plain runs, as a CSV of the toolkit before the preserve columns
        header = [c for c in header if c not in PRESERVE_COLUMNS]
    rows = [r for r in rows if r["requested_preserve_size"] == ("0" if keep == "old" else keep)]
    with open(tmp_path / "part.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "an"
    assert analysis.main([str(tmp_path / "part.csv"), "--output-dir", str(out), "--contact-sheets", "0"]) == 0
    assert not (out / "preserve.png").exists()
    assert (out / "preserve.csv").exists() == (keep != "old")
    assert note in (out / "report.html").read_text() and note in capsys.readouterr().err
