"""The preserve-set curve: ``run_repair.py`` end to end, one process per configuration, one after another:
drawdown, wall time, repair time, LP rounds, preserve rows and peak memory for each preserve size (and margin D).

    uv run python bench/preserve_curve.py --weights W --edit-set E --data-dir DIR \\
        --preserves 0 1000 10000 all [--preserve-margins 0 1] [--layer classifier.6] [-- more run_repair flags]

Every run writes its model to a scratch file (``--output`` of run_repair.py) and its JSON record under results/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--edit-set", required=True)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--preserves", nargs="+", default=["0", "1000", "10000", "all"])
    parser.add_argument("--preserve-margins", nargs="+", default=["0"])
    parser.add_argument("--layer", default="classifier.6")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more run_repair.py flags")
    return parser


def run(command: list[str], scratch: str) -> tuple[dict | None, float, float, str]:
    """(JSON record or None, wall s, peak RSS MB of that process, stderr tail) of one run_repair.py process."""
    out_path, err_path = Path(scratch, "out.json"), Path(scratch, "err.txt")
    start = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT)
        _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    tail = err_path.read_text()[-300:]
    try:
        return json.loads(out_path.read_text()), wall, usage.ru_maxrss / 1024, tail
    except ValueError:
        return None, wall, usage.ru_maxrss / 1024, tail


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    print(f"{'preserve':>8} {'D':>4} {'status':>14} {'drawdown':>9} {'on':>6} {'kept':>7} {'rows':>6} {'rounds':>6} "
          f"{'repair s':>9} {'wall s':>7} {'peak MB':>8}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for preserve in args.preserves:
            for margin in (args.preserve_margins if preserve != "0" else ["0"]):
                command = [sys.executable, "run_repair.py", "--edit-set", args.edit_set, "--weights", args.weights,
                           "--data-dir", args.data_dir, "--no-download", "--layer", args.layer, "--preserve", preserve,
                           "--preserve-margin", margin, "--output", f"{scratch}/model.pth", "--json", "--quiet",
                           *(["--dataset", args.dataset] if args.dataset else []), *extra]
                record, wall, peak, err = run(command, scratch)
                if record is None:
                    print(f"{preserve:>8} {margin:>4} failed: {err.strip().splitlines()[-1:]}", flush=True)
                    continue
                metrics = record.get("metrics") or {}
                print(f"{preserve:>8} {margin:>4} {record['status']:>14} {metrics.get('drawdown', float('nan')):>9.2f} "
                      f"{metrics.get('drawdown_set_size', 0):>6} {str(record.get('preserve_kept')):>7} "
                      f"{record.get('preserve_rows_added', 0):>6} {record.get('n_solves', 0):>6} "
                      f"{record.get('total_time', 0):>9.1f} {wall:>7.1f} {peak:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
