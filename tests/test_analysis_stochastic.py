"""analyze_stochastic.py on a real tiny stochastic sweep: tables, plots, a self-contained report, grid CSVs refused."""

from __future__ import annotations

from pathlib import Path

import analyze_stochastic
import experiment_runner
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
    # a grid CSV is refused with a pointer to the right tool
    Path("results/grid.csv").write_text("experiment_id,schema\nx,alexnet_repair.sweep/1\n")
    assert analyze_stochastic.main(["results/grid.csv"]) == 2
    assert "missing columns" in capsys.readouterr().err
