"""Sweep repair configurations and collect one CSV row per run.

Commands (flags without a command run a grid sweep):
  grid        repair-set type x size x class x bound x margin x layer x method x objective x solver x preserve
              size x preserve margin x seed; one row per run
  stochastic  sequential repair of random batches of a full repair set; one row per iteration
  merge       combine the CSVs of several shards into one
  status      progress of a sweep submitted with --submit (per shard: job state, rows done, failed, running)
  collect     merge a submitted sweep's shard CSVs into its --output-file
  resubmit    submit the unfinished shards of a submitted sweep again (they resume their CSVs)

A sweep is resumable: rerun the same command after Ctrl-C or kill -9 and it skips every finished run (failed
runs too, unless --retry-failed). Several runners on one CSV split its runs: each run is claimed before it starts.
--jobs N runs N configurations at a time; --shard I/N runs the I-th of N slices of the grid, to be combined with
`merge` or read together by analysis.py; --submit slurm|local submits every shard as a task of one job array.
When the default --weights file is missing, the base model is trained first.
Flags: `experiment_runner.py grid -h`, `experiment_runner.py stochastic -h`, `experiment_runner.py merge -h`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from alexnet_repair.cli import (add_common_args, add_data_args, add_device_args, add_repair_args, add_solver_args,
                                add_submission_commands, add_submit_args, device_from, script_main,
                                setup_logging)
from alexnet_repair.editsets import SWEEP_TYPES, parse_class
from alexnet_repair.errors import CheckpointError, UsageError
from alexnet_repair.experiments import grid as gr
from alexnet_repair.experiments import plan
from alexnet_repair.experiments import settings as ex
from alexnet_repair.experiments import stochastic as st
from alexnet_repair.experiments import submit as sb
from alexnet_repair.experiments.csvstore import read_csv
from alexnet_repair.experiments.progress import estimate_text, seconds_per_row
from alexnet_repair.experiments.setup import (SweepContext, SweepSetup, ensure_base_model, prepare_context,
                                              prepare_data)
from alexnet_repair.experiments.submission import Submission, record_path
from alexnet_repair.model import file_sha256
from alexnet_repair.paths import path_for

COMMANDS = ("grid", "stochastic", "merge", "status", "collect", "resubmit")
RECORD_COMMANDS = ("status", "collect", "resubmit")


def _add_run_args(p: argparse.ArgumentParser, stochastic: bool) -> None:
    """Flags shared by grid and stochastic sweeps."""
    p.add_argument("--target-classes", nargs="+", type=parse_class, default=list(ex.DEFAULT_CLASSES),
                   help=f"classes (0-9 or names) of the class-homogeneous types (default: {list(ex.DEFAULT_CLASSES)})")
    add_repair_args(p, sweep=True)
    p.add_argument("--seeds", nargs="+", type=int, default=list(ex.DEFAULT_SEEDS),
                   help="edit-set draws: each seed repeats the grid with another random draw (default: 0)")
    p.add_argument("--weights", default=None,
                   help=f"base model (default: {path_for('base_model')}, trained first when missing)")
    p.add_argument("--width-scale", type=int, default=1,
                   help="width divisor of a base model trained because none exists (1 = canonical AlexNet)")
    p.add_argument("--edit-split", choices=["test", "train"], default=ex.DEFAULT_EDIT_SPLIT,
                   help="split the edit sets are drawn from (default: test; drawdown is always on the test split)")
    p.add_argument("--output-file", default=str(path_for("stochastic_csv" if stochastic else "sweep_csv")),
                   help="CSV to append to (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="configurations run at once, in worker processes (default 1)")
    p.add_argument("--shard", default=None, metavar="I/N", help="run only the I-th (1..N) of N slices")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun runs recorded as failed, replacing their rows (stochastic: chains whose edit set "
                        "could not be drawn; a failed iteration is part of its chain)")
    p.add_argument("--keep-models", action="store_true",
                   help="keep repaired models under artifacts/experiments/<experiment_id>/<csv name>-<hash>/ "
                        "(stochastic: every iteration's, not just the latest)")
    p.add_argument("--list", action="store_true", help="print the runs of this grid/shard and their state; run none")
    p.add_argument("--quiet", action="store_true", help="no progress bar (terminal) or progress lines (elsewhere)")
    add_submit_args(p)
    add_solver_args(p, sweep=True)
    add_data_args(p)
    add_device_args(p)
    add_common_args(p, seed=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    grid = sub.add_parser("grid", help="grid sweep (the default)", description="Grid sweep: one CSV row per run.")
    grid.add_argument("--repair-set-sizes", nargs="+", type=int, default=list(ex.DEFAULT_SIZES),
                      help=f"requested edit-set sizes (default: {list(ex.DEFAULT_SIZES)})")
    grid.add_argument("--repair-set-types", nargs="+", choices=list(SWEEP_TYPES), default=list(ex.DEFAULT_TYPES),
                      help=f"edit-set kinds (default: {' '.join(ex.DEFAULT_TYPES)})")
    grid.add_argument("--sizing", choices=["strict", "flexible"], default=ex.DEFAULT_SIZING,
                      help="flexible: a smaller edit set when too few images exist; strict: such a run fails")
    grid.add_argument("--holdout-fraction", type=float, default=ex.DEFAULT_HOLDOUT_FRACTION,
                      help="share of each kind's candidates held out to measure generalization (default 0.5)")
    _add_run_args(grid, stochastic=False)
    sto = sub.add_parser("stochastic", help="sequential repair of random batches",
                         description="Stochastic repair: one CSV row per iteration of each chain.")
    sto.add_argument("--batch-sizes", nargs="+", type=int, default=list(st.DEFAULT_BATCH_SIZES))
    sto.add_argument("--repair-set-homogeneities", "--repair-set-types", dest="repair_set_types", nargs="+",
                     choices=list(SWEEP_TYPES), default=list(st.DEFAULT_TYPES), help="kinds of full repair set")
    sto.add_argument("--num-iterations", type=int, default=st.DEFAULT_ITERATIONS, help="repairs per chain")
    sto.add_argument("--full-set-size", type=int, default=st.DEFAULT_FULL_SET_SIZE,
                     help="cap on the full repair set (default: every image of the kind)")
    _add_run_args(sto, stochastic=True)
    merge = sub.add_parser("merge", help="combine shard CSVs", description="Combine sweep CSVs (e.g. of shards): "
                           "one row per experiment, a successful row preferred over a failed one.")
    merge.add_argument("inputs", nargs="+", help="CSV files to combine")
    merge.add_argument("--output-file", required=True, help="the combined CSV (written atomically)")
    merge.add_argument("--force", action="store_true", help="overwrite --output-file when it is not an input")
    merge.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_submission_commands(sub)
    return parser


def parse_args(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["grid", *argv]
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args


@script_main
def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.command in RECORD_COMMANDS:
        return record_command(args)
    if args.command == "merge":
        count = plan.merge_sweeps(args.inputs, args.output_file, args.force)
        print(f"merged {len(args.inputs)} file(s) into {Path(args.output_file)}: {count} row(s)")
        return 0
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "grid" and not 0 <= args.holdout_fraction < 1:
        raise UsageError("--holdout-fraction must lie in [0, 1)")
    specs = plan_specs(args)
    if args.submit != "none":
        return submit_sweep(args, specs)
    shard = plan.parse_shard(args.shard)
    if shard:
        specs = plan.shard(specs, *shard)
    if args.list:
        return list_runs(args, specs)
    setup = make_setup(args)
    ensure_weights(args, setup)
    sha = file_sha256(setup.weights)
    if args.command == "stochastic":
        return run_stochastic(args, specs, setup, sha)
    check_csv(args, setup, sha, args.output_file)
    done = plan.completed_rows(args.output_file)
    todo = plan.plan(specs, done, args.retry_failed)
    shard_text = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(f"grid{shard_text}: {len(specs)} runs, {len(specs) - len(todo)} already in {args.output_file}, "
          f"{len(todo)} to run with {args.jobs} worker(s); "
          f"{estimate_text(seconds_per_row([args.output_file]), len(todo), args.jobs)}\n"
          f"rows go to {args.output_file}, run records to {setup.record_dir}/", file=sys.stderr)
    if not todo:
        return 0
    ctx = prepare(args, setup, sha)
    rows = gr.execute(todo, ctx, args.output_file, done, args.jobs, args.threads, progress=not args.quiet)
    if rows:
        print(gr.summary_table(rows))
    failed = sum(not r["success"] for r in rows)
    print(f"wrote {len(rows)} row(s) to {args.output_file} ({failed} failed; records in {setup.record_dir}); "
          f"analyse with: uv run python analysis.py {args.output_file}", file=sys.stderr)
    return 0


def plan_specs(args) -> list:
    """The grid's runs or the stochastic chains the arguments ask for."""
    more = dict(preserves=args.preserves, preserve_margin=args.preserve_margins, preserve_split=args.preserve_split,
                objectives=args.objectives)
    if args.command == "grid":
        return gr.build_grid(args.repair_set_types, args.repair_set_sizes, args.target_classes, args.param_bounds,
                             args.margins, args.layers, args.methods, args.seeds, args.solvers, **more)
    if args.num_iterations < 1:
        raise UsageError("--num-iterations must be at least 1")
    return st.build_chains(args.repair_set_types, args.batch_sizes, args.target_classes, args.param_bounds,
                           args.margins, args.layers, args.methods, args.seeds, args.solvers, **more)


def make_setup(args) -> SweepSetup:
    grid = args.command == "grid"
    return SweepSetup(
        weights=args.weights or str(path_for("base_model")), dataset=args.dataset, data_dir=args.data_dir,
        download=not args.no_download, edit_split=args.edit_split, keep_models=args.keep_models,
        sizing=args.sizing if grid else "flexible", holdout_fraction=args.holdout_fraction if grid else 0.0,
        rows=args.rows, formulation=args.formulation, algorithm=args.algorithm, time_limit=args.time_limit,
        on_infeasible=args.on_infeasible, threads=args.threads, device=str(device_from(args)),
        record_dir=str(path_for("run_records", sweep_csv=args.output_file)) if grid else None,
        output_file=args.output_file)


def ensure_weights(args, setup: SweepSetup) -> None:
    if Path(setup.weights).exists():
        return
    if args.weights is not None:
        raise CheckpointError(f"checkpoint not found: {args.weights}")
    print(f"no base model at {setup.weights}: training one on {args.dataset} first "
          f"(training.TrainConfig defaults; minutes on a CPU)", file=sys.stderr)
    info = ensure_base_model(setup.weights, args.dataset, args.data_dir, not args.no_download, setup.device,
                             args.width_scale, progress=not args.quiet)
    print(f"trained {setup.weights}: test accuracy {info['test_accuracy']:.2f}% in {info['seconds']:.0f} s",
          file=sys.stderr)


def list_runs(args, specs) -> int:
    if args.command == "grid":
        for experiment_id, state in plan.grid_states(args.output_file, specs):
            print(f"{experiment_id}\t{state}")
    else:
        for chain_id, count in plan.chain_progress(args.output_file, specs):
            print(f"{chain_id}\t{count}/{args.num_iterations} iterations")
    return 0


def prepare(args, setup: SweepSetup, sha: str) -> SweepContext:
    print(f"preparing: base-model passes over {args.dataset} (test{'' if args.edit_split == 'test' else ' + train'})",
          file=sys.stderr)
    return prepare_context(setup, args.layers, progress=not args.quiet, weights_sha256=sha)


def check_csv(args, setup: SweepSetup, sha: str, path) -> None:
    """UsageError unless the CSV at ``path`` is empty or holds rows of this sweep's setup."""
    if args.command == "grid":
        plan.check_resumable(path, read_csv(path)[1], setup.key(sha))
    else:
        key = st.stochastic_key(setup.key(sha), args.full_set_size)
        plan.check_resumable(path, read_csv(path)[1], key, chains=True)


def run_stochastic(args, chains, setup: SweepSetup, sha: str) -> int:
    check_csv(args, setup, sha, args.output_file)
    done = sum(min(n, args.num_iterations) for _, n in plan.chain_progress(args.output_file, chains))
    todo = len(chains) * args.num_iterations - done
    print(f"stochastic: {len(chains)} chain(s) x {args.num_iterations} iterations into {args.output_file}, {done} "
          f"already there; {estimate_text(seconds_per_row([args.output_file]), todo, args.jobs, 'iteration')}",
          file=sys.stderr)
    ctx = prepare(args, setup, sha)
    count = st.execute_chains(chains, ctx, args.output_file, args.num_iterations, args.full_set_size, args.jobs,
                              args.threads, args.keep_models, args.retry_failed, progress=not args.quiet)
    print(f"ran {count} iteration(s); analyse with: uv run python analyze_stochastic.py {args.output_file}",
          file=sys.stderr)
    return 0


def submit_sweep(args, specs) -> int:
    """--submit: train the base model and fetch the data once, then submit one task per shard (see submit.py)."""
    if args.shard or args.list:
        raise UsageError("--submit runs every shard of the grid as a task: drop --shard and --list")
    if args.shards is not None and args.shards < 1:
        raise UsageError("--shards must be at least 1")
    setup = make_setup(args)
    ensure_weights(args, setup)
    prepare_data(setup)
    sub = sb.submission_from(args, specs, setup.weights, __file__)
    sha = file_sha256(setup.weights)
    for part in sub.shards:
        check_csv(args, setup, sha, part.csv)
    print(sb.overview(sub), file=sys.stderr)
    started = sb.submit(sub)
    print(sb.follow_text(sub, record_path(args.output_file)))
    return wait_and_collect(sub, sub.shards, started) if args.wait else 0


def record_command(args) -> int:
    """status / collect / resubmit of the submission record ``args.record``."""
    sub = Submission.load(args.record)
    if args.command in ("status", "collect"):
        print(sb.status_table(sub) if args.command == "status" else sb.collect_text(sub, args.output_file, args.force))
        return 0
    shards = sb.to_resubmit(sub, args.shards)
    if not shards:
        print("nothing to resubmit: every shard is complete or its job is queued or running (name shards with "
              "--shards to submit them anyway)")
        return 0
    started = sb.submit(sub, shards)
    print(f"resubmitted shard(s) {', '.join(s.name for s in shards)} as job(s) "
          f"{', '.join(s.job_ids[-1] for s in shards)}")
    return wait_and_collect(sub, shards, started) if args.wait else 0


def wait_and_collect(sub: Submission, shards, started) -> int:
    print(f"waiting for {len(started)} task(s)...", file=sys.stderr)
    failed = sb.wait(sub, shards, started)
    for line in failed:
        print(line, file=sys.stderr)
    print(sb.status_table(sub))
    print(sb.collect_text(sub))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
