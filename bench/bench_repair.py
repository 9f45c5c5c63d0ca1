"""Benchmark the repair LP formulations: on a real checkpoint and edit set, or on generated instances.

Real (the numbers to trust): ``--weights CKPT --edit-set PATH`` builds the LP exactly as run_repair.py does
(float32 prefix features of the edit images; ``--layer``, ``--rows``, ``--margin``, ``--param-bound``;
``--preserve N`` draws N train images the model gets right with ``--preserve-margin``, as run_repair.py).
Generated (``--cases``): bench/instances.py instances, post-ReLU features with ~55% zeros, a
fitted last layer, points it really misclassifies.
Each (case, formulation) runs in its own process so that its peak memory is its own. One line per run on
stdout; every solution is re-checked in float32 (repair.verify.check_solution).

    uv run python bench/bench_repair.py --weights artifacts/alexnet_base.pth \
        --edit-set data/edit_sets/synthetic_misclassified_edit_dataset.pt --dataset synthetic
    uv run python bench/bench_repair.py --weights W --edit-set E --layer classifier.4 --rows 256
    uv run python bench/bench_repair.py --cases last-100 --formulations straightforward colgen ipm
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = {  # name: (widths of layers k..m, N, editable rows of layer k or None = all)
    "last-10": ((4096, 10), 10, None),
    "last-100": ((4096, 10), 100, None),
    "last-1000": ((4096, 10), 1000, None),
    "penult-10": ((4096, 4096, 10), 10, 256),
    "penult-50": ((4096, 4096, 10), 50, 256),
    "small-last": ((512, 10), 50, None),
    "small-hidden": ((512, 256, 10), 20, 64),
}
DEFAULT_CASES = ["last-10", "last-100", "penult-10"]
FIELDS = ["case", "layer", "N", "R", "P", "formulation", "status", "rounds", "vars", "rows", "nnz", "build_s",
          "solve_s", "total_s", "peak_MB", "objective", "min_margin", "ok", "message"]
REAL = ["weights", "edit_set", "layer", "rows", "margin", "param_bound", "preserve", "preserve_margin", "dataset",
        "data_dir"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=sorted(CASES), help="cases to run")
    p.add_argument("--formulations", "--formulation", nargs="+", default=["auto"],
                   choices=["auto", "straightforward", "colgen", "ipm"], help="formulations to run")
    p.add_argument("--objective", default="linf+l1n", help="LP objective (default linf+l1n)")
    p.add_argument("--solver", default="highs", help="LP backend for simplex-based formulations")
    p.add_argument("--algorithm", default="auto", help="LP algorithm for the HiGHS solves (auto, simplex, ipm, ...)")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per run (default 600)")
    p.add_argument("--threads", type=int, default=None, help="solver / BLAS threads (default: library default)")
    p.add_argument("--seed", type=int, default=0)
    real = p.add_argument_group("a real checkpoint (instead of --cases)")
    real.add_argument("--weights", help="checkpoint to repair")
    real.add_argument("--edit-set", help="edit set .pt")
    real.add_argument("--layer", default="classifier.6")
    real.add_argument("--rows", default=None, help="editable rows (a:b, i,j,k or a count), as run_repair.py")
    real.add_argument("--margin", type=float, default=2.0)
    real.add_argument("--param-bound", type=float, default=5.0)
    real.add_argument("--preserve", type=int, default=0, help="preserve-set size (train images kept correct)")
    real.add_argument("--preserve-margin", type=float, default=0.0)
    real.add_argument("--dataset", default=None, help="dataset of the preserve set (default: the edit set's)")
    real.add_argument("--data-dir", default="data")
    p.add_argument("--json", action="store_true", help="print one JSON object per run instead of a table")
    p.add_argument("--one", nargs=2, metavar=("CASE", "FORMULATION"), help=argparse.SUPPRESS)
    return p


def real_spec(args):
    """(LPSpec, layer name) built from --weights / --edit-set exactly as run_repair.py builds it."""
    from alexnet_repair.data import load_split
    from alexnet_repair.editsets import load_editset
    from alexnet_repair.model import load_checkpoint
    from alexnet_repair.repair import RepairConfig, preserve_set_for
    from alexnet_repair.repair.bridge import lp_spec, prepare

    model, editset = load_checkpoint(args.weights), load_editset(args.edit_set)
    config = RepairConfig(layer=args.layer, rows=args.rows, margin=args.margin, param_bound=args.param_bound,
                          objective=args.objective, preserve=args.preserve, preserve_margin=args.preserve_margin)
    config.validate()
    dataset = args.dataset or (editset.dataset or "cifar10").removesuffix("-folder")
    preserve = preserve_set_for(model, editset, config, lambda s: load_split(dataset, s, args.data_dir,
                                                                              download=False), args.seed)
    model, labels, rows = prepare(model, editset.images, editset.labels, config)
    return lp_spec(model, editset.images, labels, config, rows, preserve=preserve), config.layer


def run_one(args) -> dict:
    """Run one (case, formulation) in this process and return its result row."""
    import numpy as np

    from alexnet_repair.repair.lp import solve_repair_lp
    from instances import make_instance
    from alexnet_repair.repair.verify import check_solution
    from alexnet_repair.solvers import SolveOptions

    case, formulation = args.one
    if case == "checkpoint":
        spec, layer = real_spec(args)
        n, rows = spec.inputs.shape[0], None if spec.rows is None else spec.rows.size
        dims = (spec.inputs.shape[1],) + tuple(w.shape[0] for w in spec.weights)
    else:
        dims, n, rows = CASES[case]
        spec = make_instance(n, dims, n_rows=rows, seed=args.seed, objective=args.objective)
        layer = "last" if len(dims) == 2 else "penultimate"
    t0 = time.perf_counter()
    sol = solve_repair_lp(spec, solver=args.solver, formulation=formulation,
                          options=SolveOptions(algorithm=args.algorithm, time_limit=args.time_limit,
                                              threads=args.threads))
    total = time.perf_counter() - t0
    row = {"case": case, "layer": layer, "N": n, "R": rows if rows is not None else dims[1], "P": spec.n_preserve,
           "formulation": sol.formulation, "status": sol.status.value, "rounds": sol.n_solves,
           "vars": sol.n_vars, "rows": sol.n_rows, "nnz": sol.nnz, "build_s": round(sol.build_time, 2),
           "solve_s": round(sol.solve_time, 2), "total_s": round(total, 2),
           "peak_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "objective": sol.objective,
           "min_margin": None, "ok": None, "message": sol.message}
    if sol.dW is not None:
        rep = check_solution(spec.with_preserve_points(np.arange(spec.n_preserve)) if spec.n_preserve else spec,
                             sol.dW, sol.db)
        row["min_margin"], row["ok"] = round(float(rep.min_margin), 6), bool(rep.ok)
        row["objective"] = float(np.round(sol.objective, 10))
    return row


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.weights) != bool(args.edit_set):
        raise SystemExit("--weights and --edit-set go together")
    if args.one:
        print(json.dumps(run_one(args)))
        return 0
    if not args.json:
        print("  ".join(f"{f:>11}" for f in FIELDS[:-1]), flush=True)
    failures = 0
    for case in (["checkpoint"] if args.weights else args.cases):
        for formulation in args.formulations:
            cmd = [sys.executable, __file__, "--one", case, formulation, "--objective", args.objective,
                   "--solver", args.solver, "--algorithm", args.algorithm, "--time-limit", str(args.time_limit),
                   "--seed", str(args.seed)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            for name in REAL:
                value = getattr(args, name)
                if value is not None:
                    cmd += [f"--{name.replace('_', '-')}", str(value)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not proc.stdout.strip():
                failures += 1
                print(f"{case} {formulation}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            failures += row["ok"] is False
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print("  ".join(f"{str(row[f]):>11}" for f in FIELDS[:-1]), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
