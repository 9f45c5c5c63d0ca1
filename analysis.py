"""Analyse grid-sweep CSVs (experiment_runner.py): tables, plots and a self-contained HTML report.

Reads one or more CSVs (e.g. the shards of one sweep; a run found in several counts once) and writes to
results/analysis/: summary.csv and summary.md, exponents.csv (runtime ~ size^k), per_class_change.csv, one PNG
per plot, contact sheets of a few edit sets, and report.html with all of it embedded, under a header naming the base
model, dataset, grid, commits and run times. A plot with nothing to compare (one size, one bound, ...) is left out,
with a one-line note in the report and on stderr. A sweep over several
--methods (aprnn, ft) also gets methods.csv/.md and the side-by-side plot methods.png. A sweep with preserve sets
(--preserves 0 1000 all) gets preserve.csv/.md (APRNN / APRNN+preserve / fine-tuning per preserve margin and
objective: runs, success rate, drawdown, generalization, repair time, preserve images kept) and, with two preserve
sizes or more, preserve.png (drawdown, generalization and repair time against the preserve size, "all" at the
right end); with two --preserve-margins or --objectives, preserve_margin.png and objectives.png (drawdown and
repair time against each).
"""

from __future__ import annotations

import argparse
import sys

from alexnet_repair.analysis import grid as an
from alexnet_repair.analysis import gridplots
from alexnet_repair.analysis import preserve as ps
from alexnet_repair.analysis import report
from alexnet_repair.analysis.common import to_markdown
from alexnet_repair.analysis.header import header_lines
from alexnet_repair.cli import analysis_output, analysis_parser, script_main
from alexnet_repair.fileio import atomic_write_text
from alexnet_repair.paths import path_for


def build_parser() -> argparse.ArgumentParser:
    parser = analysis_parser(__doc__, str(path_for("sweep_csv")), "sweep CSV", str(path_for("analysis_dir")))
    parser.add_argument("--contact-sheets", type=int, default=3, help="edit sets to show before/after (default 3)")
    parser.add_argument("--data-dir", default=None, help="where the runs' datasets live (default: as recorded)")
    return parser


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = analysis_output(args)
    df = an.load_sweeps(args.csv)
    fits = an.exponents(df)
    tables = result_tables(df, fits)
    written = [path for stem, _, table in tables for path in report.write_table(table, out, stem, to_markdown(table))]
    written.append(atomic_write_text(out / "per_class_change.csv", an.per_class_matrix(df).to_csv()))
    figs = report.write_figures(gridplots.figures(df, fits), out)
    plot_notes = [note for *_, note in figs.values() if note]
    sheets, notes = report.contact_sheets(df, out, args.contact_sheets, args.data_dir)
    overall = fits[fits["repair_set_type"] == "all"].iloc[0]
    page = report.build_html("Repair sweep report", intro_lines(df, overall, args.csv),
                             [(heading, t) for _, heading, t in tables], figs, sheets, notes, header_lines(df))
    written.append(atomic_write_text(out / "report.html", page))
    for stem, _, table in tables:
        if stem != "exponents":
            print(to_markdown(table))
    print(f"runtime exponent (all runs): {overall['exponent']:.3f} over {overall['points']} runs")
    for note in notes + plot_notes:
        print(f"note: {note}", file=sys.stderr)
    pngs = sum(path is not None for path, *_ in figs.values())
    print(f"wrote {len(written) + pngs + len(sheets)} files to {out} (open {out / 'report.html'})", file=sys.stderr)
    return 0


def intro_lines(df, overall, csvs) -> list[str]:
    """The report's opening paragraphs: runs and successes, the runtime growth, what the numbers mean."""
    growth = (f"Runtime grows like size^{overall['exponent']:.2f} (least squares on log-log axes, "
              f"{overall['points']} runs that reached the solver)." if overall["exponent"] == overall["exponent"]
              else "No runtime growth fitted: the runs that reached the solver have fewer than two distinct sizes.")
    return [f"{len(df)} runs from {', '.join(csvs)}: {int(df['success'].sum())} verified repairs "
            f"({100 * df['success'].mean():.0f}%).", growth,
            "Accuracies and their changes are in percent (points); drawdown > 0 means accuracy lost outside the "
            "edit set, generalization > 0 accuracy gained on held-out images of the same kind."]


def result_tables(df, fits) -> list[tuple[str, str, object]]:
    """(file stem, report heading, table) of every table the sweep has data for, in report order."""
    tables = [("summary", "Summary by type and size", an.summary(df))]
    methods, preserve = an.methods_table(df), ps.preserve_table(df)
    if methods is not None:
        tables.append(("methods", "Methods side by side (provable repair vs fine-tuning)", methods))
    if preserve is not None:
        tables.append(("preserve", "APRNN / APRNN+preserve / fine-tuning (drawdown guard)", preserve))
    return [*tables, ("exponents", "Runtime growth exponents", fits)]


if __name__ == "__main__":
    raise SystemExit(main())
