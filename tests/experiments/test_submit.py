"""experiment_runner.py --submit: shards as a submitit job array (run here with the local executor), status,
collect, resubmit after a killed task, and the sbatch script the Slurm executor writes (with a stand-in sbatch)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import experiment_runner
from alexnet_repair.errors import UsageError
from alexnet_repair.experiments import submit as sb
from alexnet_repair.experiments.csvstore import append_row
from alexnet_repair.experiments.grid import build_grid
from alexnet_repair.experiments.jobs import ShardTask, slurm_minutes
from alexnet_repair.experiments.schema import COLUMNS, STOCHASTIC_COLUMNS
from alexnet_repair.experiments.submission import Submission, record_path, shard_progress
from alexnet_repair.paths import path_for
from sweeptools import common, rows_of
from sweeptools import HOLDER, _env, _until

ROOT = Path(__file__).resolve().parents[2]


def grid6(cifar_dir, weights, out="results/sub.csv") -> list[str]:
    """6 runs: sizes 3 and 6 x (misclassified, class-homogeneous for classes 3 and 5)."""
    return [*common(cifar_dir, weights), "--repair-set-sizes", "3", "6", "--repair-set-types", "misclassified",
            "class_homogeneous_incorrect", "--target-classes", "3", "5", "--param-bound", "20", "--margin", "0.05",
            "--output-file", out]


def grid6_ids() -> list[str]:
    return [s.experiment_id for s in build_grid(["misclassified", "class_homogeneous_incorrect"], [3, 6], [3, 5],
                                                [20.0], [0.05], solver="highs")]


def test_local_submission_in_3_shards_collects_every_run_once(workdir, cifar_dir, quiet_checkpoint, capsys):
    assert experiment_runner.main([*grid6(cifar_dir, quiet_checkpoint), "--submit", "local", "--shards", "3",
                                   "--wait"]) == 0
    out, err = capsys.readouterr()
    assert "grid: 6 runs (0 already done) in 3 shard(s)" in err and "status results/sub.submit/submission.json" in out
    rows = rows_of("results/sub.csv")
    assert sorted(r["experiment_id"] for r in rows) == sorted(grid6_ids())
    sub = Submission.load("results/sub.submit")
    assert [len(s.ids) for s in sub.shards] == [2, 2, 2]
    for part in sub.shards:     # each task ran its own shard into its own CSV
        assert sorted(r["experiment_id"] for r in rows_of(part.csv)) == sorted(part.ids)
    assert experiment_runner.main(["status", "results/sub.submit/submission.json"]) == 0
    status = capsys.readouterr().out
    assert status.count("COMPLETED") == 3 and "total: 6/6 runs done" in status


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def test_a_killed_task_is_resubmitted_and_completes_its_shard(workdir, cifar_dir, quiet_checkpoint, capsys):
    assert experiment_runner.main([*grid6(cifar_dir, quiet_checkpoint), "--submit", "local", "--shards", "3"]) == 0
    sub = Submission.load(record_path("results/sub.csv"))
    victim = sub.shards[1]
    claims = path_for("claims", sweep_csv=victim.csv)
    _until(lambda: any(claims.glob("*.lock")) or sb.state_of(sub, victim) != "RUNNING", "the first claim")
    for pid in _children(int(victim.job_ids[-1])):          # the task, under submitit's controller
        os.kill(pid, signal.SIGKILL)
    _until(lambda: all(sb.state_of(sub, s) != "RUNNING" for s in sub.shards), "the tasks")
    progress = shard_progress(sub, victim)
    assert progress["done"] < progress["total"] == 2 and progress["running"] == 0
    assert experiment_runner.main(["status", "results/sub.submit"]) == 0
    status = capsys.readouterr().out
    assert re.search(r"2/3 +\d+ +STOPPED", status) and status.count("COMPLETED") == 2
    assert experiment_runner.main(["resubmit", "results/sub.submit", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "resubmitted shard(s) 2/3" in out and "collected" in out
    assert sorted(r["experiment_id"] for r in rows_of("results/sub.csv")) == sorted(grid6_ids())
    assert len(Submission.load("results/sub.submit").shards[1].job_ids) == 2
    assert experiment_runner.main(["resubmit", "results/sub.submit"]) == 0
    assert "nothing to resubmit" in capsys.readouterr().out


def _record(tmp_path, ids, iterations=None) -> Submission:
    sub = sb.new_submission("grid" if iterations is None else "stochastic", ["grid"], ids, tmp_path / "s.csv", 3,
                            "local", {}, ROOT / "experiment_runner.py", iterations=iterations)
    sub.save(record_path(tmp_path / "s.csv"))
    return sub


def test_status_counts_partly_done_shards(tmp_path, capsys):
    sub = _record(tmp_path, [f"run{i}" for i in range(6)])             # shards: run0 run3 / run1 run4 / run2 run5
    one, two, _ = sub.shards
    for key, ok in (("run0", True), ("run3", False), ("run3", True), ("run1", False)):     # run3 retried
        append_row(one.csv if key in one.ids else two.csv, {"experiment_id": key, "success": ok}, COLUMNS)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, two.csv, "run4", str(tmp_path / "held")], env=_env())
    try:
        _until(lambda: (tmp_path / "held").exists() or holder.poll() is not None, "the claim holder")
        got = [shard_progress(sub, s) for s in sub.shards]
        assert experiment_runner.main(["status", str(record_path(tmp_path / "s.csv"))]) == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert [(p["done"], p["total"], p["failed"], p["running"]) for p in got] == [(2, 2, 0, 0), (1, 2, 1, 1),
                                                                               (0, 2, 0, 0)]
    assert "total: 3/6 runs done, 1 failed, 1 in progress" in capsys.readouterr().out


def test_status_counts_chain_iterations(tmp_path):
    sub = _record(tmp_path, ["a", "b", "c"], iterations=4)           # one chain per shard
    for key, it, ok in (("a", 1, True), ("a", 2, False), ("b", 0, False)):
        part = next(s for s in sub.shards if key in s.ids)
        append_row(part.csv, {"experiment_id": key, "iteration": it, "success": ok}, STOCHASTIC_COLUMNS)
    got = [(p["done"], p["total"], p["failed"]) for p in (shard_progress(sub, s) for s in sub.shards)]
    assert got == [(2, 4, 1), (4, 4, 1), (0, 4, 0)]      # a chain whose full set could not be drawn counts whole


def test_slurm_submission_writes_the_sbatch_script(workdir, cifar_dir, quiet_checkpoint, monkeypatch, capsys):
    """A stand-in sbatch keeps the script submitit writes and answers like Slurm; nothing is submitted."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {workdir}/sbatch.sh\necho "Submitted batch job 4242"\n')
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert experiment_runner.main([*grid6(cifar_dir, quiet_checkpoint), "--jobs", "2", "--submit", "slurm",
                                   "--slurm-partition", "gpu", "--slurm-time", "1-02:00:00", "--slurm-mem", "16G",
                                   "--slurm-gpus", "1", "--slurm-extra", "account=proj", "--slurm-extra",
                                   "qos=high"]) == 0
    script = (workdir / "sbatch.sh").read_text()
    sub = Submission.load("results/sub.submit")
    for line in ("--partition=gpu", "--time=1560", "--mem=16G", "--gpus-per-node=1", "--account=proj",
                 "--qos=high", "--cpus-per-task=2", "--array=0-2%3", "--job-name=sweep-sub"):
        assert f"#SBATCH {line}\n" in script, line
    assert f"-m submitit.core._submit {sub.folder}" in script
    assert [s.job_ids for s in sub.shards] == [["4242_0"], ["4242_1"], ["4242_2"]]     # 6 runs / --jobs 2
    from submitit.core.utils import pickle_load

    task = pickle_load(Path(sub.folder) / "4242_1_submitted.pkl").function
    assert isinstance(task, ShardTask) and task.cwd == str(workdir)
    assert task.argv[-7:] == ["--submit", "none", "--shard", "2/3", "--output-file", sub.shards[1].csv,
                              "--no-download"]
    requeued = task.checkpoint()            # preempted or out of time: the same shard again
    assert requeued.function.argv == task.argv
    assert experiment_runner.main(["status", "results/sub.submit"]) == 0      # no sacct here: state unknown
    assert "0/2" in capsys.readouterr().out


def test_slurm_time_and_extra_flags():
    assert [slurm_minutes(t) for t in ("90", "30:30", "4:00:00", "1-0", "1-12:30", "2-00:00:01")] == \
        [90, 31, 240, 1440, 2190, 2881]
    for bad in ("soon", "0", "1:2:3:4"):
        with pytest.raises(UsageError):
            slurm_minutes(bad)
    assert experiment_runner.main(["--submit", "local", "--shard", "1/2"]) == 2


def test_the_package_imports_without_submitit(workdir, quiet_checkpoint):
    code = ("import sys; sys.modules['submitit'] = None\n"
            "import alexnet_repair, alexnet_repair.experiments.submit, experiment_runner\n"
            f"sys.exit(experiment_runner.main(['--dataset', 'synthetic', '--weights', {str(quiet_checkpoint)!r}, "
            "'--submit', 'local', '--repair-set-sizes', '2', '--quiet']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=_env(), capture_output=True, text=True)
    assert done.returncode == 2 and "--submit needs the submitit package" in done.stderr, done.stderr[-2000:]
