"""analysis.py on a preserve study (preserve sizes 0, 1000 and all, two preserve margins, two objectives, and
fine-tuning runs, which have no objective): the preserve table against the rows, "all" at the right end of the
size axis with the number of images it took, and the plots against preserve size, margin and objective."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

import analysis
from alexnet_repair.analysis.grid import load_sweeps
from alexnet_repair.analysis.preserve import fig_preserve
from alexnet_repair.analysis.study import fig_objectives, fig_preserve_margin
from alexnet_repair.experiments.schema import COLUMNS, SCHEMA
from reporttools import header_of
from sweeptools import rows_of

ALL_COUNT = 45123        # images "all" took (the rows' preserve_size)


def _row(method, objective, preserve, margin, seed) -> dict:
    """One made-up run whose drawdown and time follow from its settings (so every mean is known)."""
    size = {0: 0, 1000: 1000, "all": ALL_COUNT}[preserve]
    drawdown = {0: 20.0, 1000: 5.0, "all": 0.5}[preserve] + (margin or 0) + (objective == "l1") + 0.25 * seed
    tag = ("" if not preserve else f"_p{preserve}_d{margin:g}") + ("" if objective in ("linf+l1n", "") else
                                                                    f"_o{objective}")
    return {"experiment_id": f"misclassified_n10_c-_b5_m2_l6_s{seed}_{method}_auto{tag}", "schema": SCHEMA,
            "repair_set_type": "misclassified", "requested_repair_set_size": 10, "actual_repair_set_size": 10,
            "param_bound": 5, "margin": 2, "layer": "classifier.6", "method": method, "seed": seed,
            "objective": objective, "status": "success", "success": True, "solve_time": 1.0,
            "repair_runtime_seconds": 2.0 + size / 1000 + seed, "drawdown": drawdown + 3 * (method == "ft"),
            "generalization": 1.0, "max_abs_change": 0.5, "requested_preserve_size": preserve,
            "preserve_size": size, "preserve_margin": margin if preserve else "", "preserve_split":
            "train" if preserve else "", "preserve_kept": size, "preserve_rows_added": 0,
            "timestamp": "2025-01-01T00:00:00+0000", "dataset": "cifar10"}


@pytest.fixture
def study(tmp_path):
    rows = [_row("aprnn", objective, preserve, margin, seed) for objective in ("linf+l1n", "l1")
            for preserve in (0, 1000, "all") for margin in ((0.0, 2.0) if preserve else (None,)) for seed in (0, 1)]
    rows += [_row("ft", "", preserve, 2.0 if preserve else None, 0) for preserve in (0, 1000, "all")]
    path = tmp_path / "study.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path, rows


def test_study_table_and_plots(study, tmp_path):
    path, rows = study
    out = tmp_path / "an"
    assert analysis.main([str(path), "--output-dir", str(out), "--contact-sheets", "0"]) == 0
    table = rows_of(out / "preserve.csv")
    keys = [(r["method"], r["preserve_margin"], r["objective"]) for r in table]
    assert keys == [("APRNN", "", "l1"), ("APRNN", "", "linf+l1n"),
                    *[(f"APRNN+preserve {p}", d, o) for p in ("1000", "all") for d in ("0.0", "2.0")
                      for o in ("l1", "linf+l1n")],
                    ("fine-tuning", "", ""), ("fine-tuning+preserve 1000", "2.0", ""),
                    ("fine-tuning+preserve all", "2.0", "")]
    for line in table:
        method = "ft" if line["method"].startswith("fine-tuning") else "aprnn"
        preserve = line["method"].rpartition(" ")[2] if "+" in line["method"] else "0"
        runs = [r for r in rows if r["method"] == method and str(r["requested_preserve_size"]) == preserve
                and str(r["preserve_margin"]) == (line["preserve_margin"] or "")
                and r["objective"] == line["objective"]]
        assert int(line["runs"]) == len(runs) == (1 if method == "ft" else 2), line
        assert float(line["mean_drawdown"]) == pytest.approx(np.mean([r["drawdown"] for r in runs]))
        assert float(line["mean_repair_time_s"]) == pytest.approx(
            np.mean([r["repair_runtime_seconds"] for r in runs]))
        assert line["preserve_kept_pct"] == ("" if preserve == "0" else "100.0")
    by_key = {k: float(r["mean_drawdown"]) for k, r in zip(keys, table)}
    assert by_key[("APRNN+preserve all", "0.0", "linf+l1n")] == 0.625 < by_key[("APRNN", "", "linf+l1n")]
    for name in ("preserve", "preserve_margin", "objectives"):
        pixels = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
        assert pixels.shape[0] > 100 and pixels.std() > 5, name
    page = (out / "report.html").read_text()
    assert all(f'alt="{name}"' in page for name in ("preserve", "preserve_margin", "objectives"))
    grid = header_of(page)["grid"].splitlines()
    assert {"objectives: l1, linf+l1n", "preserve sizes: 0, 1000, all", "preserve margins: 0, 2"} <= set(grid)
    assert "by objective left out" not in page and "vs preserve margin left out" not in page


def test_all_sits_at_the_right_end_with_its_count(study):
    df = load_sweeps([study[0]])
    fig, note = fig_preserve(df)
    assert note == ""
    drawdown, _, time = fig.axes[:3]
    ticks = dict(zip([t.get_text() for t in drawdown.get_xticklabels()], drawdown.get_xticks()))
    assert list(ticks) == ["0", "1000", f"all\n({ALL_COUNT:,})"]
    assert ticks["0"] < ticks["1000"] < ticks[f"all\n({ALL_COUNT:,})"] == ALL_COUNT
    assert drawdown.get_xscale() == "symlog" and time.get_title() == "Repair time vs preserve size"
    # a line per (method, objective, margin); the plain runs start each margin's lines
    labels = sorted(t.get_text() for t in fig.legends[0].texts)
    assert labels == ["APRNN, l1, D=0", "APRNN, l1, D=2", "APRNN, linf+l1n, D=0", "APRNN, linf+l1n, D=2",
                      "fine-tuning, D=2"]
    fig, _ = fig_objectives(df)
    bars = [t.get_text() for t in fig.legends[0].texts]
    assert bars == ["no preserve set", "preserve 1000, D=0", "preserve 1000, D=2", f"preserve all ({ALL_COUNT:,}), D=0",
                    f"preserve all ({ALL_COUNT:,}), D=2"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["linf+l1n", "l1"]
    fig, note = fig_preserve_margin(df)
    assert note == "" and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "2"]


def test_one_objective_or_margin_is_a_note(study):
    df = load_sweeps([study[0]])
    one = df[(df["objective"] != "l1") & (df["preserve_margin"].fillna(2.0) == 2.0)]
    assert fig_objectives(one) == (None, "Drawdown and time by objective left out: every APRNN run has objective "
                                         "linf+l1n (sweep --objectives over two values or more to compare)")
    fig, note = fig_preserve_margin(one)
    assert fig is None and note.startswith("Drawdown and time vs preserve margin left out: every run with a preserve "
                                           "set has preserve margin 2")
