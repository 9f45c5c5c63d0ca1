"""Repair an AlexNet on an edit set with APRNN (an LP over one layer's weights and the later biases),
or fine-tune the same parameters as a baseline (--method ft).

Modes find the edit set editset_generator.py wrote: ``misclassified`` or ``by-class --target-class K``; or give
``--edit-set PATH``. Only a repair that the saved float32 model verifies is written.

Partial repairs (status "partial"): with --on-infeasible max-fixed an infeasible LP becomes a MILP for the
largest fixable subset; its repair is verified on that subset and written. Fine-tuning that leaves edit images
unfixed after --ft-max-steps is written only with --save-partial. Both report the unfixed images.

Preserve set (--preserve N): N images of --preserve-split (train by default) that the base model classifies
correctly with --preserve-margin; APRNN keeps every one of them, checked on the saved model like the edit images.
The record lists them (preserve_indices, dataset indices of that split).

Exit codes: 0 verified success on EVERY edit image; 1 anything less (partial repair, infeasible, time limit,
failed check); 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from alexnet_repair.cli import (add_common_args, add_data_args, add_device_args, add_repair_args, add_solver_args,
                                data_source_from, device_from, ft_config_from, script_main, setup_logging)
from alexnet_repair.cli import repair_config_from as config_from
from alexnet_repair.provenance import versions
from alexnet_repair.data import CLASS_NAMES
from alexnet_repair.errors import UsageError
from alexnet_repair.fileio import write_json
from alexnet_repair.model import file_sha256, load_checkpoint, save_checkpoint
from alexnet_repair.paths import path_for
from alexnet_repair.editsets import load_editset_for
from alexnet_repair.evaluate import evaluate_repair
from alexnet_repair.repair import FTConfig, run_method

log = logging.getLogger("run_repair")


def build_parser() -> argparse.ArgumentParser:
    f = FTConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["misclassified", "by-class"],
                        help="which generated edit set to repair (or give --edit-set)")
    parser.add_argument("--target-class", type=int, default=None, help="by-class: class 0-9")
    parser.add_argument("--focus", choices=["incorrect", "correct", "all"], default="incorrect",
                        help="by-class: which of the generator's class sets (default: incorrect)")
    parser.add_argument("--edit-set", default=None, help="path of an edit set .pt (instead of a mode)")
    parser.add_argument("--weights", default=str(path_for("base_model")), help="model to repair")
    parser.add_argument("--output", default=str(path_for("repaired_model")), help="where the repaired model goes")
    add_repair_args(parser)
    parser.add_argument("--save-partial", action="store_true",
                        help="ft: write the model even when it does not fix every edit image")
    ft = parser.add_argument_group("fine-tuning (--method ft)")
    ft.add_argument("--ft-max-steps", type=int, default=f.max_steps,
                    help=f"optimiser steps at most (default {f.max_steps})")
    ft.add_argument("--ft-lr", type=float, default=None, help="learning rate (default 1e-2 adam, 1e-1 sgd)")
    ft.add_argument("--ft-optimizer", choices=["adam", "sgd"], default=f.optimizer)
    ft.add_argument("--ft-replay", type=int, default=f.replay, metavar="N",
                    help="training images (the edit set's dataset) mixed into every step, as in MFT (default 0)")
    parser.add_argument("--no-eval", action="store_true", help="skip the test-set drawdown evaluation")
    parser.add_argument("--json", action="store_true", help="print the JSON record instead of the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_solver_args(parser)
    add_data_args(parser, default=None)
    add_device_args(parser)
    add_common_args(parser, seed=0)
    return parser


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, progress=not args.quiet)
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
    data = data_source_from(args, editset.meta.get("dataset"))
    dataset = data.dataset
    if editset.meta.get("checkpoint_sha256") and editset.meta["checkpoint_sha256"] != file_sha256(args.weights):
        log.warning("edit set %s was built with another checkpoint than %s", editset_path, args.weights)
    print(f"{'fine-tuning' if config.method == 'ft' else 'repairing'} {args.weights} on {editset_path} "
          f"({len(editset)} images, {dataset}) - {config.layer}, bound {config.param_bound}, margin {config.margin}"
          + (f", preserving {config.preserve} {config.preserve_split} images" if config.preserve else ""),
          file=sys.stderr)
    result = run_method(model, editset, config, data, ft_config_from(args), args.seed or 0, device)
    record = {"tool": "run_repair", "weights": args.weights, "edit_set": str(editset_path), "dataset": dataset,
              **result.record(), "output": None, "versions": versions()}
    if result.unfixable_indices is not None:
        record["unfixable"] = [{"index": i, "dataset_index": int(editset.indices[i]), "class": c,
                                "class_name": CLASS_NAMES[c]}
                               for i, c in zip(result.unfixable_indices, result.unfixable_labels)]
    save = result.success or (result.status == "partial" and (config.method == "aprnn" or args.save_partial))
    if save:
        save_checkpoint(result.model, args.output)
        record["output"] = args.output
    if result.model is not None and not args.no_eval:
        preserve_test = (result.preserve_indices or ()) if config.preserve_split == "test" else ()
        record["metrics"] = evaluate_repair(model, result.model, editset, data, device, args.quiet,
                                            preserve_test_indices=preserve_test)
    out = write_json(path_for("run_record", tool="repair", name=Path(str(editset_path)).stem), record)
    if args.json:
        print(json.dumps({**record, "record": str(out)}, indent=2, default=str))
    else:
        print_report(result, record, out)
    if result.status == "partial":
        hint = "" if save else " (model not written: add --save-partial to keep it)"
        print(f"partial: {result.message}{hint}", file=sys.stderr)
    elif not result.success:
        print(f"error: {result.message}", file=sys.stderr)
    return 0 if result.success else 1


def print_report(result, record: dict, record_path: Path) -> None:
    v = result.verification
    print(f"status          {result.status}" + ("" if result.success else f" ({result.message})"))
    if v is not None:
        which = "" if v.required == v.total else f" on the {v.required} required"
        print(f"points fixed    {v.fixed}/{v.total} with the margin (efficacy {v.efficacy:.2f}%; verified min "
              f"margin{which} {v.min_margin:.4f})")
        print(f"max |change|    {v.max_abs_change:.6g}")
    if result.config.preserve:
        kept = "" if result.preserve_kept is None else f", {result.preserve_kept} kept"
        print(f"preserve        {result.preserve_size} images ({result.config.preserve_split}), "
              f"{result.preserve_rows_added} rows added{kept}")
    unfixable = record.get("unfixable")
    if unfixable:
        shown = ", ".join(f"{u['index']} ({u['class_name']})" for u in unfixable[:20])
        print(f"not fixed       {len(unfixable)}: {shown}{' ...' if len(unfixable) > 20 else ''}")
    details = result.details
    if "milp_status" in details:
        print(f"max-fixed MILP  {details['milp_status']}, {details['milp_claimed']} fixable (bound "
              f"{details['milp_bound']}, gap {details['milp_gap']}, proven {details.get('proven_maximum')}), "
              f"{details['milp_time']:.2f} s, {details['milp_vars']} variables")
    if result.formulation == "ft":
        print(f"fine-tuning     {result.iterations.get('steps')} steps of {result.solver}, {result.n_vars} "
              f"editable parameters, final hinge loss {details.get('final_loss', float('nan')):.4g}")
    else:
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
        left_out = (f" or the preserve set ({metrics['drawdown_excludes_preserve']} test images held by construction)"
                    if metrics.get("drawdown_excludes_preserve") else "")
        print(f"drawdown        {metrics['drawdown']:.2f} points on {metrics['drawdown_set_size']} images "
              f"not in the edit set{left_out}")
        if metrics.get("holdout_size"):
            print(f"generalization  {metrics['generalization']:+.2f} points on {metrics['holdout_size']} held-out "
                  f"images of the same kind")
    if record.get("output"):
        print(f"saved           {record['output']}")
    print(f"record          {record_path}")


if __name__ == "__main__":
    raise SystemExit(main())
