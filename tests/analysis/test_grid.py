"""analysis.py on a real tiny sweep: tables, decodable non-blank PNGs, a self-contained HTML report, and clear
errors for empty, foreign and other-version CSVs."""

from __future__ import annotations

import csv
import re
from contextlib import chdir

import numpy as np
import pytest
from PIL import Image

import analysis
from alexnet_repair.analysis.grid import growth_exponent


def test_report_outputs(sweep_dir, capsys):
    with chdir(sweep_dir):
        assert analysis.main(["results/experiment.csv"]) == 0
    out = sweep_dir / "results/analysis"
    for name in ("summary.csv", "summary.md", "exponents.csv", "per_class_change.csv", "report.html"):
        assert (out / name).stat().st_size > 0, name
    pngs = sorted(out.glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"success_rate", "class_size_heatmap", "runtime_vs_size", "cost_vs_size", "cost_vs_bound_margin",
            "per_class_change"} <= names
    assert any(n.startswith("editset_") for n in names)
    for path in pngs:
        with Image.open(path) as image:
            image.verify()
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert pixels.shape[0] > 100 and pixels.std() > 5, path.name           # not blank
    with open(out / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert {(r["repair_set_type"], r["requested_repair_set_size"]) for r in summary} == {
        (t, s) for t in ("misclassified", "class_homogeneous_incorrect") for s in ("2", "5")}
    assert sum(int(r["runs"]) for r in summary) == 12
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    sources = re.findall(r"""<img[^>]*\ssrc=["']([^"']*)""", html)
    assert len(sources) >= len(pngs) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "Summary by type and size" in html and "class_homogeneous_incorrect" in html
    printed = capsys.readouterr().out
    assert "| repair_set_type |" in printed and "runtime exponent" in printed


def test_several_csvs_count_each_run_once(sweep_dir, tmp_path):
    src = sweep_dir / "results/experiment.csv"
    lines = src.read_text().splitlines(keepends=True)
    (tmp_path / "a.csv").write_text("".join(lines[:5]))
    (tmp_path / "b.csv").write_text(lines[0] + "".join(lines[3:]))      # overlaps a.csv in two runs
    with chdir(sweep_dir):
        assert analysis.main([str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--output-dir",
                              str(tmp_path / "out"), "--contact-sheets", "0"]) == 0
    with open(tmp_path / "out/summary.csv", newline="") as handle:
        assert sum(int(r["runs"]) for r in csv.DictReader(handle)) == 12


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("", "holds no runs"),
    ("experiment_id,timestamp\n", "holds no runs"),
    ("a,b\n1,2\n", "missing columns"),
])
def test_bad_csvs_are_one_line_errors(tmp_path, capsys, text, message):
    path = tmp_path / "x.csv"
    if text is not None:
        path.write_text(text)
    assert analysis.main([str(path), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_other_versions_and_tools_are_named(sweep_dir, tmp_path, capsys):
    text = (sweep_dir / "results/experiment.csv").read_text()
    (tmp_path / "old.csv").write_text(text.replace("alexnet_repair.sweep/1", "alexnet_repair.sweep/0"))
    assert analysis.main([str(tmp_path / "old.csv")]) == 2
    assert "schema 'alexnet_repair.sweep/0'" in capsys.readouterr().err
    (tmp_path / "sto.csv").write_text(text.replace("alexnet_repair.sweep/1", "alexnet_repair.stochastic/1"))
    assert analysis.main([str(tmp_path / "sto.csv")]) == 2
    assert "analyze_stochastic.py" in capsys.readouterr().err


def test_growth_exponent_recovers_a_power_law():
    sizes = np.array([10, 20, 50, 100, 200])
    k, a, n = growth_exponent(sizes, 0.02 * sizes ** 1.7)
    assert k == pytest.approx(1.7) and a == pytest.approx(0.02) and n == 5
    assert np.isnan(growth_exponent([10, 10], [1.0, 2.0])[0])


def test_a_sweep_without_successes_still_reports(sweep_dir, tmp_path):
    with open(sweep_dir / "results/experiment.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows, header = list(reader), reader.fieldnames
    for row in rows:
        row.update(success="False", repair_successful="False", status="infeasible", drawdown="",
                   generalization="", per_class_change="", worst_class_change="")
    with open(tmp_path / "failed.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert analysis.main([str(tmp_path / "failed.csv"), "--output-dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out/report.html").stat().st_size > 0
