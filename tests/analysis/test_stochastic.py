"""analyze_stochastic.py on a real tiny stochastic sweep: tables, plots, a self-contained report under a header naming
model, grid and commits, a one-line note for a plot with one batch size, grid CSVs refused."""

from __future__ import annotations

from pathlib import Path

import analyze_stochastic
import experiment_runner
from alexnet_repair.provenance import git_commit
from reporttools import header_of, rewrite_csv, run_range, text_of
from sweeptools import args_for, rows_of


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
    assert html.count("<table") == html.count("<div class='table-wrap'><table>") == 1
    rows = rows_of("results/s.csv")
    header = header_of(html)
    assert header["base model"] == f"sha256 {rows[0]['weights_sha256'][:12]}… (the CSV records no path)"
    assert header["dataset"] == "not recorded in the CSV" and header["iterations"] == "2 per chain"
    assert {"types: misclassified", "batch sizes: 2, 4", "parameter bounds: 20", "margins: 0.05",
            "seeds: 0, 1"} <= set(header["grid"].splitlines())
    assert header["toolkit"].startswith(f"runs at commit {rows[0]['git_commit']} ")
    assert header["toolkit"].endswith(f"this analysis at commit {git_commit()}")
    assert header["ran"].splitlines()[0] == run_range(rows)
    # one batch size: the batch-size comparison is left out, with its one line where it would have been
    rewrite_csv("results/s.csv", "results/b2.csv", keep=lambda r: r["batch_size"] == "2")
    assert analyze_stochastic.main(["results/b2.csv", "--output-dir", "results/an2"]) == 0
    assert not (out.parent / "an2/batch_size_comparison.png").exists()
    note = ("Batch-size comparison left out: every chain has batch size 2 (sweep --batch-sizes over two values or more "
            "to compare)")
    assert note in text_of((out.parent / "an2/report.html").read_text()) and note in capsys.readouterr().err
    # a grid CSV is refused with a pointer to the right tool
    Path("results/grid.csv").write_text("experiment_id,schema\nx,alexnet_repair.sweep/1\n")
    assert analyze_stochastic.main(["results/grid.csv"]) == 2
    assert "missing columns" in capsys.readouterr().err
