"""Analyse stochastic-repair CSVs (experiment_runner.py stochastic): accuracy over iterations with 95% intervals
across chains, repair time per iteration, batch-size comparisons, and a summary table.

Writes to results/analysis/stochastic/: summary.csv, summary.md, curves.csv, one PNG per plot and report.html
(self-contained).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from alexnet_repair.analysis import report
from alexnet_repair.analysis import stochastic as sa
from alexnet_repair.analysis.common import to_markdown
from alexnet_repair.cli import analysis_output, analysis_parser, script_main
from alexnet_repair.fileio import atomic_write_text
from alexnet_repair.paths import path_for


def build_parser() -> argparse.ArgumentParser:
    return analysis_parser(__doc__, str(path_for("stochastic_csv")), "stochastic CSV",
                           str(path_for("stochastic_analysis_dir")))


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = analysis_output(args)
    df = sa.load_stochastic(args.csv)
    table = sa.summary(df)
    markdown = to_markdown(table)
    written = report.write_table(table, out, "summary", markdown)
    full = sa.with_baseline(df)
    curves = pd.concat([sa.curves(full, m).assign(metric=m) for m in [*sa.METRICS, "batch_repair_time"]])
    written.append(atomic_write_text(out / "curves.csv", curves.to_csv(index=False)))
    figs = report.write_figures(sa.figures(df), out)
    intro = [f"{df['experiment_id'].nunique()} chains, {len(df)} iterations from {', '.join(args.csv)}; "
             f"{100 * df['success'].mean():.0f}% of the batch repairs verified.",
             "Each iteration repairs a random batch of the full repair set, starting from the previous model; a failed "
             "repair keeps the model. Intervals are 95% Student-t intervals across chains (seeds, classes, ...)."]
    page = report.build_html("Stochastic repair report", intro, [("Summary by type and batch size", table)], figs)
    written.append(atomic_write_text(out / "report.html", page))
    print(markdown)
    print(f"wrote {len(written) + len(figs)} files to {out} (open {out / 'report.html'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
