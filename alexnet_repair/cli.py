"""Flags shared by the root scripts, defined once (data, device, solver, repair settings), and the error-to-exit-code
wrapper."""

from __future__ import annotations

import argparse
import logging
import sys
from functools import wraps
from pathlib import Path

import torch

from .data import DATASETS, DataSource, dataset_family
from .errors import AlexRepairError, UsageError
from .model import CLASSIFIER_LINEARS
from .paths import path_for
from . import progress_log
from .repair import FORMULATIONS, OBJECTIVES, FTConfig, RepairConfig
from .repair.types import METHODS, preserve_size


def add_data_args(parser: argparse.ArgumentParser, default: str | None = "cifar10",
                  default_from: str = "the edit set's dataset") -> None:
    """--dataset/--data-dir/--no-download. ``default=None`` lets a script take the dataset from elsewhere
    (``default_from`` says where, in the help)."""
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default=default,
                       help="cifar10 (downloaded into --data-dir on first use) or the offline 'synthetic' set"
                            + ("" if default else f" (default: {default_from}, else cifar10)"))
    root = path_for("dataset_root")
    group.add_argument("--data-dir", default=str(root), help=f"folder holding cifar-10-batches-py (default: {root})")
    group.add_argument("--no-download", action="store_true", help="never try to download CIFAR-10")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cuda", action="store_true", help="run forward passes on the GPU (error if none)")


def add_common_args(parser: argparse.ArgumentParser, seed: int | None = 0) -> None:
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed, help=f"random seed (default: {seed})")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def analysis_parser(doc: str, csv_default: str, what: str, output_dir: str) -> argparse.ArgumentParser:
    """The analysis scripts' parser: CSV files (``what`` names them in the help), --output-dir, --log-level."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="*", default=[csv_default], help=f"{what} file(s) (default: %(default)s)")
    parser.add_argument("--output-dir", default=output_dir, help="default: %(default)s")
    add_common_args(parser, seed=None)
    return parser


def analysis_output(args) -> Path:
    """Set up logging for an analysis script and create its --output-dir."""
    setup_logging(args.log_level)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def add_solver_args(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """--solver (with ``sweep``: --solver/--solvers, a grid dimension), --time-limit, --threads."""
    group = parser.add_argument_group("solver")
    what = ("auto (default): the toolkit's own certified interior-point method (builtin-ipm) where it applies, else "
            "Gurobi when a licence that fits the model exists, else HiGHS; highs / gurobi: that solver solves every "
            "LP (an error, not a switch, when it cannot)")
    if sweep:
        group.add_argument("--solver", "--solvers", dest="solvers", nargs="+", choices=["auto", "highs", "gurobi"],
                           default=["auto"], help="solvers, a grid dimension: " + what)
    else:
        group.add_argument("--solver", choices=["auto", "highs", "gurobi"], default="auto", help=what)
    group.add_argument("--time-limit", type=float, default=None, help="solver time limit in seconds")
    group.add_argument("--threads", type=int, default=None, help="solver threads (default: the solver's choice)")


def add_repair_args(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The repair settings: run_repair.py's flags, or with ``sweep`` experiment_runner.py's, where the grid
    dimensions take several values (--param-bounds, --margins, --layers, --objectives, --methods, --preserves,
    --preserve-margins) and the help is a sweep's."""
    d = RepairConfig()  # a grid dimension's default is the single run's

    def flag(name: str, field: str, help: str | None, sweep_help: str | None, plural=None, **kw) -> None:
        """``plural``: (flags, dest, defaults) of the flag in a sweep, where it is a grid dimension."""
        if sweep and plural:
            flags, dest, defaults = plural
            parser.add_argument(*flags, dest=dest, nargs="+", default=list(defaults), help=sweep_help, **kw)
        else:
            parser.add_argument(name, default=getattr(d, field), help=sweep_help if sweep else help, **kw)

    flag("--param-bound", "param_bound", "max |parameter change| (default 5.0)",
         "max |parameter change| values (default: 5.0)",
         (("--param-bound", "--param-bounds"), "param_bounds", [d.param_bound]), type=float)
    flag("--margin", "margin", "classification margin (default 2.0)", "margin values (default: 2.0)",
         (("--margin", "--margins"), "margins", [d.margin]), type=float)
    flag("--layer", "layer", f"layer to edit: {', '.join(CLASSIFIER_LINEARS)} or last/penultimate/first (default: "
         "the last)", "layers to edit: classifier.1/.4/.6 or last/penultimate/first (default: the last)",
         (("--layers",), "layers", [d.layer]))
    flag("--rows", "rows", "editable rows of the layer: a:b, i,j,k, or a count N (the N rows with the largest loss "
         "gradient); default all", "editable rows of the layer (see run_repair.py; default all)")
    flag("--objective", "objective", "default linf+l1n (APRNN)", "LP objectives, a grid dimension of the aprnn runs "
         f"({', '.join(OBJECTIVES)}; default: linf+l1n, APRNN's; other ones get ids ending _o<objective>)",
         (("--objective", "--objectives"), "objectives", [d.objective]), choices=OBJECTIVES)
    flag("--formulation", "formulation", None, None, choices=FORMULATIONS)
    flag("--algorithm", "algorithm", "solver algorithm: auto, simplex, primal, ipm, ipm-nocrossover, pdlp",
         "solver algorithm (see run_repair.py)")
    flag("--method", "method", "aprnn: the provable LP repair (default); ft: fine-tuning baseline on the same "
         "parameters", "repair methods (default: aprnn)", (("--methods",), "methods", [d.method]),
         choices=METHODS)
    flag("--on-infeasible", "on_infeasible", "aprnn: when no repair of all images exists, fail (default) or repair "
         "the largest fixable subset (a MILP, under --time-limit too; exit 1, status partial, model written)",
         "max-fixed: repair the largest fixable subset when no full repair exists (a MILP)",
         choices=["fail", "max-fixed"])
    _add_preserve_args(flag)


def _add_preserve_args(flag) -> None:
    """--preserve/--preserves, --preserve-margin, --preserve-split (``flag``: add_repair_args' helper)."""
    guarantee = ("aprnn keeps every one of them, like the edit images, checked on the saved float32 model (fine-tuning "
                 "only pushes them with a hinge loss)")
    flag("--preserve", "preserve", "preserve-set size N: N images of --preserve-split that the base model classifies "
         f"correctly must stay so, or 'all' of them; {guarantee}. Default 0: plain APRNN",
         f"preserve-set sizes, a grid dimension (e.g. --preserves 0 1000 all; default: 0, none); {guarantee}",
         (("--preserve", "--preserves"), "preserves", [RepairConfig.preserve]), type=preserve_size, metavar="N|all")
    kept = ("each preserve image keeps label logit - every other logit >= min(D, its margin on the base model - "
            "2e-4), so no image is pushed up and none falls below where it was")
    flag("--preserve-margin", "preserve_margin", f"D: {kept} (default {RepairConfig.preserve_margin:g})",
         f"values of D, a grid dimension of the runs with a preserve set: {kept}", type=float, metavar="D",
         plural=(("--preserve-margin", "--preserve-margins"), "preserve_margins", [RepairConfig.preserve_margin]))
    flag("--preserve-split", "preserve_split", "split the preserve set is drawn from (default train; test "
         "contaminates the drawdown measurement: its images are held correct by construction)",
         "split the preserve sets are drawn from (default train; test contaminates the drawdown measurement)",
         choices=["train", "test"])


def add_submit_args(parser: argparse.ArgumentParser) -> None:
    """experiment_runner.py's --submit flags: the sweep as a job array through submitit, one task per shard."""
    group = parser.add_argument_group("submission (one scheduler task per shard; see `experiment_runner.py status`)")
    group.add_argument("--submit", choices=["none", "local", "slurm"], default="none",
                       help="run here (none, the default), or submit the shards as a job array: to Slurm, or as "
                            "background processes on this machine (local; every shard at once)")
    group.add_argument("--shards", type=int, default=None, metavar="N",
                       help="tasks to split the grid into (default: one per --jobs runs or chains; local: at most "
                            "cores / --jobs)")
    group.add_argument("--wait", action="store_true", help="wait for every task, then collect the shard CSVs")
    group.add_argument("--slurm-partition", default=None, metavar="NAME", help="sbatch --partition")
    group.add_argument("--slurm-time", default=None, metavar="TIME",
                       help="time limit per task: minutes, H:M:S or D-H:M:S (default 24:00:00; a task that hits it "
                            "is requeued, up to 3 times, and resumes its shard)")
    group.add_argument("--slurm-cpus", type=int, default=None, metavar="N",
                       help="sbatch --cpus-per-task (default: --jobs x --threads, or --jobs)")
    group.add_argument("--slurm-mem", default=None, metavar="MEM", help="sbatch --mem, e.g. 16G")
    group.add_argument("--slurm-gpus", type=int, default=None, metavar="N", help="GPUs per task (--gpus-per-node)")
    group.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch flag, e.g. --slurm-extra account=myproj --slurm-extra qos=high "
                            "(repeatable)")


def add_submission_commands(sub) -> None:
    """experiment_runner.py's status / collect / resubmit RECORD commands (``sub``: its subparsers), of a sweep
    submitted with --submit."""
    status = sub.add_parser("status", help="progress of a submitted sweep", description="Per shard: the task's "
                            "state, rows done / total, failed, in progress (claims held); then the totals.")
    collect_ = sub.add_parser("collect", help="merge a submitted sweep's shard CSVs", description="Merge the shard "
                              "CSVs into the sweep's --output-file with merge's rules (the file itself is one of the "
                              "inputs when it exists, unless --force).")
    collect_.add_argument("--output-file", default=None, help="default: the sweep's --output-file")
    collect_.add_argument("--force", action="store_true", help="replace --output-file with the shards' rows alone")
    again = sub.add_parser("resubmit", help="submit unfinished shards again", description="Submit shards of a "
                           "submitted sweep again, with the same executor settings; each resumes its CSV.")
    again.add_argument("--shards", nargs="+", type=int, default=None, metavar="I", help="shard numbers (default: "
                       "every unfinished shard whose job is neither queued nor running)")
    again.add_argument("--wait", action="store_true", help="wait for the tasks, then collect")
    for p in (status, collect_, again):
        p.add_argument("record", help="the submission record (<csv stem>.submit/submission.json) or its folder")
        add_common_args(p, seed=None)


def data_source_from(args, recorded: str | None = None) -> DataSource:
    """Where a script's data comes from: --dataset (else the ``recorded`` dataset of an edit set or checkpoint, else
    cifar10), --data-dir and --no-download."""
    return DataSource(args.dataset or dataset_family(recorded), args.data_dir, not args.no_download)


def ft_config_from(args) -> FTConfig:
    """Fine-tuning's settings from run_repair.py's --ft-* flags and --seed."""
    return FTConfig(max_steps=args.ft_max_steps, lr=args.ft_lr, optimizer=args.ft_optimizer, replay=args.ft_replay,
                    seed=args.seed)


def repair_config_from(args) -> RepairConfig:
    """The RepairConfig of run_repair.py's flags (:func:`add_repair_args` and :func:`add_solver_args`)."""
    return RepairConfig(layer=args.layer, rows=args.rows, param_bound=args.param_bound, margin=args.margin,
                        objective=args.objective, solver=args.solver, algorithm=args.algorithm,
                        formulation=args.formulation, time_limit=args.time_limit, threads=args.threads,
                        method=args.method, on_infeasible=args.on_infeasible, preserve=args.preserve,
                        preserve_margin=args.preserve_margin, preserve_split=args.preserve_split)


def device_from(args) -> torch.device:
    if getattr(args, "cuda", False):
        if not torch.cuda.is_available():
            raise UsageError("--cuda was given but no CUDA device is available (drop --cuda to run on the CPU)")
        return torch.device("cuda")
    return torch.device("cpu")


def setup_logging(level: str = "WARNING", progress: bool = False) -> None:
    """Log at ``level``. The long steps' progress lines (progress_log, INFO) are in the log at INFO or below;
    with ``progress`` and stderr a terminal they are also shown there as plain lines at any level (a script passes
    ``progress`` unless --quiet)."""
    logging.basicConfig(level=getattr(logging, level), format="%(levelname)s %(name)s: %(message)s", force=True)
    lines = progress_log.progress
    for handler in list(lines.handlers):
        lines.removeHandler(handler)
    lines.propagate = True
    lines.setLevel(logging.NOTSET)
    if progress and sys.stderr.isatty():
        lines.setLevel(logging.INFO)
        if getattr(logging, level) > logging.INFO:  # the root handler would drop them: show them on their own
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            lines.addHandler(handler)
            lines.propagate = False


def script_main(func):
    """Wrap ``main(argv) -> int``: user errors become one line on stderr and their exit code, never a traceback."""

    @wraps(func)
    def wrapper(argv=None) -> int:
        try:
            return int(func(argv) or 0)
        except AlexRepairError as err:
            sys.stderr.write(f"error: {err}\n")
            return err.exit_code
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            return 130

    return wrapper
