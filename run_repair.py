"""Repair an AlexNet on an edit set with APRNN (an LP over one layer's weights and the later biases).

Modes find the edit set editset_generator.py wrote: ``misclassified`` or ``by-class --target-class K``; or give
``--edit-set PATH``. Only a repair that the saved float32 model verifies is written. Exit codes: 0 verified
success, 1 no repair (infeasible, time limit, failed check), 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from alexnet_repair.cli import (add_common_args, add_data_args, add_device_args, add_solver_args, device_from,
                                script_main, setup_logging, versions)
from alexnet_repair.data import CLASS_NAMES
from alexnet_repair.errors import UsageError
from alexnet_repair.fileio import write_json
from alexnet_repair.model import CLASSIFIER_LINEARS, file_sha256, load_checkpoint, save_checkpoint
from alexnet_repair.paths import path_for
from alexnet_repair.repair import RepairConfig
from alexnet_repair.repair.lp import FORMULATIONS, OBJECTIVES
from alexnet_repair.workflow import evaluate_repair, load_editset_for, run_repair_method

log = logging.getLogger("run_repair")


def build_parser() -> argparse.ArgumentParser:
    d = RepairConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["misclassified", "by-class"],
                        help="which generated edit set to repair (or give --edit-set)")
    parser.add_argument("--target-class", type=int, default=None, help="by-class: class 0-9")
    parser.add_argument("--focus", choices=["incorrect", "correct", "all"], default="incorrect",
                        help="by-class: which of the generator's class sets (default: incorrect)")
    parser.add_argument("--edit-set", default=None, help="path of an edit set .pt (instead of a mode)")
    parser.add_argument("--weights", default=str(path_for("base_model")), help="model to repair")
    parser.add_argument("--output", default=str(path_for("repaired_model")), help="where the repaired model goes")
    parser.add_argument("--param-bound", type=float, default=d.param_bound, help="max |parameter change| (default 5.0)")
    parser.add_argument("--margin", type=float, default=d.margin, help="classification margin (default 2.0)")
    parser.add_argument("--layer", default=d.layer, help=f"layer to edit: {', '.join(CLASSIFIER_LINEARS)} "
                                                         "or last/penultimate/first (default: the last)")
    parser.add_argument("--rows", default=None, help="editable rows of the layer: a:b, i,j,k, or a count N "
                                                     "(the N rows with the largest loss gradient); default all")
    parser.add_argument("--objective", choices=OBJECTIVES, default=d.objective, help="default linf+l1n (APRNN)")
    parser.add_argument("--formulation", choices=FORMULATIONS, default=d.formulation)
    parser.add_argument("--algorithm", default=d.algorithm, help="solver algorithm: auto, simplex, primal, ipm, "
                                                                 "ipm-nocrossover, pdlp")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-set drawdown evaluation")
    parser.add_argument("--json", action="store_true", help="print the JSON record instead of the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_solver_args(parser)
    add_data_args(parser, default=None)
    add_device_args(parser)
    add_common_args(parser, seed=0)
    return parser


def config_from(args) -> RepairConfig:
    return RepairConfig(layer=args.layer, rows=args.rows, param_bound=args.param_bound, margin=args.margin,
                        objective=args.objective, solver=args.solver, algorithm=args.algorithm,
                        formulation=args.formulation, time_limit=args.time_limit, threads=args.threads)


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.mode is None and args.edit_set is None:
        raise UsageError("give a mode (misclassified, by-class) or --edit-set PATH")
    if args.mode == "by-class" and args.edit_set is None and args.target_class not in range(len(CLASS_NAMES)):
        names = ", ".join(f"{i} {n}" for i, n in enumerate(CLASS_NAMES))
        raise UsageError(f"by-class needs --target-class 0-9 ({names})")
    config = config_from(args)
    config.validate()
    device = device_from(args)
    model = load_checkpoint(args.weights)
    editset, editset_path = load_editset_for(args.mode, args.target_class, args.focus, args.edit_set, args.dataset)
    dataset = args.dataset or editset.meta.get("dataset") or "cifar10"
    if editset.meta.get("checkpoint_sha256") and editset.meta["checkpoint_sha256"] != file_sha256(args.weights):
        log.warning("edit set %s was built with another checkpoint than %s", editset_path, args.weights)
    print(f"repairing {args.weights} on {editset_path} ({len(editset)} images, {dataset}) - {config.layer}, "
          f"bound {config.param_bound}, margin {config.margin}", file=sys.stderr)
    result = run_repair_method(model, editset, config, args, device)
    record = {"tool": "run_repair", "weights": args.weights, "edit_set": str(editset_path), "dataset": dataset,
              **result.record(), "output": None, "versions": versions()}
    if result.success:
        save_checkpoint(result.model, args.output)
        record["output"] = args.output
        if not args.no_eval:
            record["metrics"] = evaluate_repair(model, result.model, editset, dataset, args, device)
    out = write_json(path_for("run_record", tool="repair", name=Path(str(editset_path)).stem), record)
    if args.json:
        print(json.dumps({**record, "record": str(out)}, indent=2, default=str))
    else:
        print_report(result, record, out)
    if not result.success:
        print(f"error: {result.message}", file=sys.stderr)
    return 0 if result.success else 1


def print_report(result, record: dict, record_path: Path) -> None:
    v = result.verification
    print(f"status          {result.status}" + ("" if result.success else f" ({result.message})"))
    if v is not None:
        print(f"points fixed    {v.correct}/{v.total} (verified min margin {v.min_margin:.4f})")
        print(f"max |change|    {v.max_abs_change:.6g}")
    print(f"LP size         {result.n_vars} variables, {result.n_rows} rows, {result.nnz} nonzeros "
          f"({result.formulation}, {result.n_solves} solve(s))")
    print(f"solver          {result.solver} {result.solver_version}, iterations {result.iterations}")
    print(f"time            build {result.build_time:.2f} s, solve {result.solve_time:.2f} s, "
          f"total {result.total_time:.2f} s")
    if result.objective is not None:
        print(f"objective       {result.objective:.6g} ({result.config.objective})")
    metrics = record.get("metrics")
    if metrics:
        print(f"test accuracy   {metrics['baseline_test_accuracy']:.2f}% -> {metrics['repaired_test_accuracy']:.2f}%")
        print(f"drawdown        {metrics['drawdown']:.2f} points on {metrics['drawdown_set_size']} images "
              f"not in the edit set")
        if metrics.get("holdout_size"):
            print(f"generalization  {metrics['generalization']:+.2f} points on {metrics['holdout_size']} held-out "
                  f"images of the same kind")
    if record.get("output"):
        print(f"saved           {record['output']}")
    print(f"record          {record_path}")


if __name__ == "__main__":
    raise SystemExit(main())
