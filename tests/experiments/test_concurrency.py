"""Several runners on one sweep CSV: each run (grid) or chain (stochastic) is claimed before it starts, so they split
the work with no row written twice and none lost; a killed runner's claim is taken over; a chain killed with
kill -9 resumes to the rows of an uninterrupted one; merge's conflict rules."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import experiment_runner
from alexnet_repair.experiments import grid as gr
from alexnet_repair.experiments.claims import Claims
from alexnet_repair.experiments.csvstore import read_csv
from alexnet_repair.experiments.schema import COLUMNS, SCHEMA
from alexnet_repair.experiments.setup import SweepSetup, prepare_context
from alexnet_repair.model import load_checkpoint
from sweeptools import HOLDER, ROOT, _env, _until, args_for, common, rows_of


VOLATILE = {"timestamp", "batch_repair_time", "build_time", "solve_time", "model_path"}
# A runner: import everything, say it is ready, wait for the go file, then run main (so runners start together).
RUNNER = """import os, sys, time, pathlib
import experiment_runner
go = pathlib.Path(sys.argv[1])
pathlib.Path(f"{go}.ready.{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.01)
sys.exit(experiment_runner.main(sys.argv[2:]))
"""
# A claim holder: hold the claim on sys.argv[2] of the CSV sys.argv[1] until killed.
def run_together(n: int, args: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start ``n`` runners of ``args`` in ``cwd`` at the same moment; wait for them all."""
    go = cwd / "go"
    logs = [cwd / f"runner{i}.err" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-c", RUNNER, str(go), *args], cwd=cwd, env=_env(),
                              stdout=subprocess.DEVNULL, stderr=open(log, "w")) for log in logs]
    _until(lambda: len(list(cwd.glob("go.ready.*"))) == n or any(p.poll() is not None for p in procs), "runners")
    go.touch()
    out = [subprocess.CompletedProcess(p.args, p.wait(), None, log.read_text()) for p, log in zip(procs, logs)]
    for done in out:
        assert done.returncode == 0, done.stderr[-3000:]
    return out


def grid_args(cifar_dir, weights) -> list[str]:
    """12 runs of the tiny model (3 sizes x 2 bounds x 2 margins)."""
    return [*common(cifar_dir, weights), "--repair-set-sizes", "2", "3", "4", "--repair-set-types", "misclassified",
            "--param-bounds", "10", "20", "--margins", "0.05", "0.1", "--output-file", "results/exp.csv"]


@pytest.mark.parametrize("runners", [2, 3])
def test_concurrent_grid_runners_write_each_row_once(workdir, cifar_dir, quiet_checkpoint, runners):
    args = grid_args(cifar_dir, quiet_checkpoint)
    args.remove("--quiet")                          # progress lines (not a terminal) name what each runner did
    out = run_together(runners, args, workdir)
    rows = rows_of(workdir / "results/exp.csv")
    ids = [r["experiment_id"] for r in rows]
    assert len(ids) == 12 and len(set(ids)) == 12
    written = [int(p.stderr.split("wrote ")[1].split(" row")[0]) if "wrote " in p.stderr else 0 for p in out]
    assert sum(written) == 12, [p.stderr[-1500:] for p in out]      # every row written by exactly one runner
    assert all("sweep: " in p.stderr for p in out if "wrote " in p.stderr)


def test_concurrent_stochastic_runners_split_the_chains(workdir, cifar_dir, quiet_checkpoint):
    args = args_for(cifar_dir, quiet_checkpoint, "results/sto.csv", 3)
    args[args.index("--batch-sizes") + 1:args.index("--batch-sizes") + 2] = ["2", "3", "4"]
    run_together(2, args, workdir)
    rows = rows_of(workdir / "results/sto.csv")
    keys = [(r["experiment_id"], r["iteration"]) for r in rows]
    assert len(keys) == 9 and len(set(keys)) == 9
    assert sorted({int(i) for _, i in keys}) == [1, 2, 3]


def test_a_held_claim_is_left_to_its_holder_and_taken_over_when_it_dies(workdir, cifar_dir, quiet_checkpoint,
                                                                         capsys):
    args = grid_args(cifar_dir, quiet_checkpoint)
    held = gr.build_grid(["misclassified"], [3], [], [20.0], [0.1], solver="highs")[0].experiment_id
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "results/exp.csv", held, "holding"], cwd=workdir,
                              env=_env())
    try:
        _until(lambda: Path("holding").exists() or holder.poll() is not None, "the claim holder")
        assert Claims("results/exp.csv").held(held)
        assert experiment_runner.main(args) == 0
        assert held not in {r["experiment_id"] for r in rows_of("results/exp.csv")}
        assert len(rows_of("results/exp.csv")) == 11
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not Claims("results/exp.csv").held(held)        # the OS dropped the dead holder's lock
    assert experiment_runner.main(args) == 0
    rows = rows_of("results/exp.csv")
    assert len(rows) == 12 and rows[-1]["experiment_id"] == held
    assert "11 already in results/exp.csv, 1 to run" in capsys.readouterr().err


def test_the_done_check_is_read_again_under_the_claim(workdir, cifar_dir, quiet_checkpoint):
    """A run the plan saw as to do, finished by another runner before this one claims it, is not run again."""
    spec = gr.build_grid(["misclassified"], [2], [], [20.0], [0.05], solver="highs")[0]
    setup = SweepSetup(weights=str(quiet_checkpoint), data_dir=str(cifar_dir), download=False, threads=1)
    ctx = prepare_context(setup, ["classifier.6"], progress=False)
    base = load_checkpoint(quiet_checkpoint)
    first = gr.run_claimed(spec, ctx, base, 1, "results/a.csv", seen={})
    assert first["experiment_id"] == spec.experiment_id and "skipped" not in first
    before = Path("results/a.csv").read_bytes()
    again = gr.run_claimed(spec, ctx, base, 1, "results/a.csv", seen={})   # planned before the row existed
    assert again == {"experiment_id": spec.experiment_id, "skipped": "done"}
    assert Path("results/a.csv").read_bytes() == before
    # a failed row to retry that another runner retried meanwhile (the row changed) is not retried twice
    key, row = spec.experiment_id, rows_of("results/a.csv")[0]
    seen = {key: {**row, "timestamp": "an older attempt"}}
    assert gr.run_claimed(spec, ctx, base, 1, "results/a.csv", seen=seen)["skipped"] == "done"
    retried = gr.run_claimed(spec, ctx, base, 1, "results/a.csv", seen={key: row})
    assert "skipped" not in retried and len(rows_of("results/a.csv")) == 1


def test_stochastic_chain_killed_and_resumed_matches_an_uninterrupted_one(workdir, cifar_dir, quiet_checkpoint):
    total = 6
    assert experiment_runner.main(args_for(cifar_dir, quiet_checkpoint, "results/whole.csv", total)) == 0
    whole = rows_of("results/whole.csv")
    args = args_for(cifar_dir, quiet_checkpoint, "results/cut.csv", total)
    proc = subprocess.Popen([sys.executable, str(ROOT / "experiment_runner.py"), *args], cwd=workdir, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _until(lambda: len(read_csv("results/cut.csv")[1]) >= 1 or proc.poll() is not None, "the first iteration")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = read_csv("results/cut.csv")[1]
    assert 1 <= len(partial) < total, proc.stderr.read().decode()[-2000:]
    assert experiment_runner.main(args) == 0
    cut = rows_of("results/cut.csv")
    assert [int(r["iteration"]) for r in cut] == list(range(1, total + 1))     # none twice, none lost
    for a, b in zip(whole, cut):
        assert {k: v for k, v in a.items() if k not in VOLATILE} == {k: v for k, v in b.items() if k not in VOLATILE}


# ---- merge: conflict rules ---------------------------------------------------------------------------------------

def _write(path, rows, columns=COLUMNS) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _row(key, success, stamp, schema=SCHEMA) -> dict:
    return {"experiment_id": key, "schema": schema, "success": str(success), "timestamp": stamp,
            "status": "success" if success else "infeasible"}


def test_merge_prefers_success_then_the_later_row(tmp_path):
    a = _write(tmp_path / "a.csv", [_row("x", True, "1"), _row("y", False, "1"), _row("z", False, "1")])
    b = _write(tmp_path / "b.csv", [_row("x", False, "2"), _row("y", True, "2"), _row("z", False, "2")])
    for inputs in ([a, b], [b, a]):
        out = tmp_path / "m.csv"
        assert experiment_runner.main(["merge", *inputs, "--output-file", str(out), "--force"]) == 0
        merged = {r["experiment_id"]: r for r in rows_of(out)}
        assert len(rows_of(out)) == 3
        assert merged["x"]["success"] == "True" and merged["y"]["success"] == "True"
        assert merged["z"]["timestamp"] == ("2" if inputs[1] == b else "1")      # both failed: the later input


def test_merge_refuses_other_schemas_and_columns(tmp_path, capsys):
    a = _write(tmp_path / "a.csv", [_row("x", True, "1")])
    old = _write(tmp_path / "old.csv", [_row("y", True, "1", schema="alexnet_repair.sweep/0")])
    other = _write(tmp_path / "other.csv", [{"experiment_id": "z", "mystery": 1}], ["experiment_id", "mystery"])
    out = tmp_path / "m.csv"
    assert experiment_runner.main(["merge", a, old, "--output-file", str(out)]) == 2
    assert experiment_runner.main(["merge", a, other, "--output-file", str(out)]) == 2
    err = capsys.readouterr().err
    assert "mix schemas" in err and "other columns" in err and not out.exists()


def test_merge_replaces_an_existing_output_only_with_force(tmp_path, capsys):
    a = _write(tmp_path / "a.csv", [_row("x", True, "1")])
    out = Path(_write(tmp_path / "m.csv", [_row("old", True, "0")]))
    assert experiment_runner.main(["merge", a, "--output-file", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and [r["experiment_id"] for r in rows_of(out)] == ["old"]
    assert experiment_runner.main(["merge", a, str(out), "--output-file", str(out)]) == 0     # listed: merged into
    assert sorted(r["experiment_id"] for r in rows_of(out)) == ["old", "x"]
    assert experiment_runner.main(["merge", a, "--output-file", str(out), "--force"]) == 0
    assert [r["experiment_id"] for r in rows_of(out)] == ["x"]
