"""Analyse stochastic-repair CSVs (experiment_runner.py stochastic): accuracy over iterations with 95% intervals
across chains, repair time per iteration, batch-size comparisons, and a summary table.

Writes to results/analysis/stochastic/: summary.csv, summary.md, curves.csv, one PNG per plot and report.html
(self-contained, under a header naming the base model, grid, commits and run times; a plot with nothing to compare is
left out, with a one-line note in the report and on stderr).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from alexnet_repair.analysis import report
from alexnet_repair.analysis import stochastic as sa
from alexnet_repair.analysis.common import to_markdown
from alexnet_repair.analysis.header import STOCHASTIC_SETTINGS, HeaderLine, header_lines
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
    figs = report.write_figures(sa.figures(df), out)
    table = sa.summary(df)
    markdown = to_markdown(table)
    written = report.write_table(table, out, "summary", markdown)
    full = sa.with_baseline(df)
    curves = pd.concat([sa.curves(full, m).assign(metric=m) for m in [*sa.METRICS, "batch_repair_time"]])
    written.append(atomic_write_text(out / "curves.csv", curves.to_csv(index=False)))
    intro = [f"{df['experiment_id'].nunique()} chains, {len(df)} iterations from {', '.join(args.csv)}; "
             f"{100 * df['success'].mean():.0f}% of the batch repairs verified.",
             "Each iteration repairs a random batch of the full repair set, starting from the previous model; a failed "
             "repair keeps the model. Intervals are 95% Student-t intervals across chains (seeds, classes, ...)."]
    chains = df.groupby("experiment_id")["iteration"].max()
    header = header_lines(df, STOCHASTIC_SETTINGS, model_path=None, extra=[
        HeaderLine("iterations", f"{int(chains.min())} to {int(chains.max())} per chain" if chains.nunique() > 1
                   else f"{int(chains.max())} per chain")])
    page = report.build_html("Stochastic repair report", intro, [("Summary by type and batch size", table)], figs,
                             header=header)
    written.append(atomic_write_text(out / "report.html", page))
    print(markdown)
    for note in (note for *_, note in figs.values() if note):
        print(f"note: {note}", file=sys.stderr)
    pngs = sum(path is not None for path, *_ in figs.values())
    print(f"wrote {len(written) + pngs} files to {out} (open {out / 'report.html'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
