"""The HTML report of analysis.py as a reader sees it, on a real tiny sweep: every table in a sideways-scrolling box
with numbers right-aligned, a header naming model, data, grid, commits and times, plots with a single x value left
out with a one-line note where they would have been (sections kept), and figures with room for every label."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

import analysis
from alexnet_repair.analysis.gridplots import fig_class_heatmap, fig_per_class
from alexnet_repair.data import CLASS_NAMES
from alexnet_repair.provenance import git_commit
from reporttools import header_of, rewrite_csv, run_range, text_of
from sweeptools import rows_of

SECTIONS = ["Summary by type and size", "Runtime growth exponents", "Plots", "Edit sets before and after repair"]


@pytest.fixture(scope="module")
def report(sweep_dir, tmp_path_factory):
    """analysis.py on the 12-run sweep (one bound, two margins): (output folder, report HTML, CSV rows)."""
    out = tmp_path_factory.mktemp("report")
    csv = sweep_dir / "results/experiment.csv"
    assert analysis.main([str(csv), "--output-dir", str(out), "--contact-sheets", "1"]) == 0
    return out, (out / "report.html").read_text(), rows_of(csv)


def _headings(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_every_table_scrolls_sideways_with_numbers_right_aligned(report):
    _, page, _ = report
    tables = page.count("<table")
    assert tables == 2 and page.count("<div class='table-wrap'><table>") == tables
    assert ".table-wrap{overflow-x:auto" in page and ".num{text-align:right" in page
    summary = page[page.index("<table"):page.index("</table>")]
    assert "<th class='num'>runs</th>" in summary and "<th>repair_<wbr>set_<wbr>type</th>" in summary
    assert re.search(r"<td>misclassified</td><td class='num'>2</td><td class='num'>\d+</td>", summary)


def test_header_names_model_data_grid_commits_and_times(report):
    _, page, rows = report
    header = header_of(page)
    assert list(header) == ["base model", "dataset", "grid", "toolkit", "ran"]
    first = rows[0]
    assert header["base model"] == f"{first['baseline_model_path']} (sha256 {first['weights_sha256'][:12]}…)"
    assert {r["dataset"] for r in rows} == {"cifar10-folder"}           # the tiny CIFAR-format folder
    assert header["dataset"] == "cifar10-folder; edit sets from the test split" and "class='synthetic'" not in page
    assert header["grid"].splitlines() == [
        "types: class_homogeneous_incorrect, misclassified", "edit-set sizes: 2, 5", "classes: 3 cat, 5 dog",
        "parameter bounds: 20", "margins: 0.05, 0.1", f"layers: {first['layer']}", "methods: aprnn",
        "objectives: linf+l1n", "preserve sizes: 0", "seeds: 0"]
    assert first["git_commit"] and {r["git_commit"] for r in rows} == {first["git_commit"]}
    assert header["toolkit"] == (f"runs at commit {first['git_commit']} (alexnet_repair {first['toolkit_version']}); "
                                 f"this analysis at commit {git_commit()}")
    ran, made = header["ran"].splitlines()
    assert ran == run_range(rows) and made.startswith("report made 20")


def test_synthetic_data_is_marked(sweep_dir, tmp_path):
    rewrite_csv(sweep_dir / "results/experiment.csv", tmp_path / "syn.csv", dataset="synthetic")
    assert analysis.main([str(tmp_path / "syn.csv"), "--output-dir", str(tmp_path / "an"), "--contact-sheets",
                          "0"]) == 0
    page = (tmp_path / "an/report.html").read_text()
    assert header_of(page)["dataset"] == "synthetic: generated images, not CIFAR-10; edit sets from the test split"
    assert "<dd><span class='synthetic'>synthetic: generated images" in page


def test_a_single_bound_leaves_out_its_panel_with_a_note(report):
    out, page, _ = report
    note = ("Drawdown vs parameter bound left out: every run has parameter bound 20 (sweep --param-bounds over two "
            "values or more to compare)")
    text = text_of(page)
    assert note in text and "Drawdown vs margin" not in text
    figure = page[page.index('alt="cost_vs_bound_margin"'):page.index('alt="per_class_change"')]
    assert note in text_of(figure)                                         # under the plot it belongs to
    with Image.open(out / "cost_vs_bound_margin.png") as one, Image.open(out / "cost_vs_size.png") as two:
        assert one.width < 0.6 * two.width                                # the margin panel alone
    assert _headings(page) == SECTIONS


def test_one_bound_and_one_margin_keep_the_sections(sweep_dir, tmp_path, capsys):
    rows = rewrite_csv(sweep_dir / "results/experiment.csv", tmp_path / "one.csv", keep=lambda r: r["margin"] == "0.05")
    assert len(rows) == 6
    out = tmp_path / "an"
    assert analysis.main([str(tmp_path / "one.csv"), "--output-dir", str(out), "--contact-sheets", "1"]) == 0
    page = (out / "report.html").read_text()
    assert _headings(page) == SECTIONS
    note = ("Drawdown vs parameter bound and vs margin left out: every run has parameter bound 20 and margin 0.05 "
            "(sweep --param-bounds or --margins over two values or more to compare)")
    assert not (out / "cost_vs_bound_margin.png").exists() and 'alt="cost_vs_bound_margin"' not in page
    between = page[page.index('alt="cost_vs_size"'):page.index('alt="per_class_change"')]
    assert text_of(between).count("left out") == 1 and note in text_of(between)   # where the plot would have been
    for name in ("success_rate", "class_size_heatmap", "runtime_vs_size", "cost_vs_size", "per_class_change"):
        assert (out / f"{name}.png").exists() and f'alt="{name}"' in page, name
    assert f"note: {note}" in capsys.readouterr().err


def _outside(fig) -> list[str]:
    """The texts of ``fig`` (tick labels, titles, axis labels) that reach past its edges once drawn."""
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    texts = [t for ax in fig.axes for t in [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title, ax.xaxis.label,
                                            ax.yaxis.label] if t.get_text()]
    assert texts
    return [t.get_text() for t in texts if not box.contains(*t.get_window_extent(renderer).min)
            or not box.contains(*t.get_window_extent(renderer).max)]


@pytest.mark.parametrize("classes, sizes", [(range(10), [10, 50, 100]), (range(10), [10]), ([1], [5, 10])])
def test_class_heatmap_has_room_for_every_label(classes, sizes):
    runs = pd.DataFrame([{"repair_set_type": kind, "target_class": c, "requested_repair_set_size": n,
                          "success": (c + n) % 3 > 0} for kind in ("class_homogeneous_incorrect",
                                                                   "class_homogeneous_correct")
                         for c in classes for n in sizes])
    fig, note = fig_class_heatmap(runs)
    assert note == "" and len([ax for ax in fig.axes if ax.get_yticklabels()]) >= 2
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == [f"{c} {CLASS_NAMES[c]}" for c in classes]
    assert _outside(fig) == []


def test_class_heatmap_of_a_single_cell_is_left_out():
    runs = pd.DataFrame([{"repair_set_type": "class_homogeneous_incorrect", "target_class": 1,
                          "requested_repair_set_size": 10, "success": True}])
    fig, note = fig_class_heatmap(runs)
    assert fig is None and note.startswith("Success by class and size left out: one class and one size")


def test_per_class_heatmap_has_room_for_every_label():
    matrix = pd.DataFrame([[1.0] * 10, [-2.0] * 10], columns=list(CLASS_NAMES),
                          index=["class_homogeneous_incorrect n=1000", "misclassified n=10"])
    fig, note = fig_per_class(matrix)
    assert note == "" and _outside(fig) == []
