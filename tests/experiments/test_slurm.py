"""--submit slurm's job states: squeue / sacct answers parsed and merged with the tasks' result files (stand-in
commands, runs everywhere), and a tiny grid submitted to a real Slurm (marked ``slurm``; skipped without one:
scripts/slurm_single_node.sh starts a single-node Slurm without accounting)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import experiment_runner
from alexnet_repair.experiments import submit as sb
from alexnet_repair.experiments.grid import build_grid
from alexnet_repair.experiments.jobs import ACTIVE, parse_states, slurm_states, wait_slurm
from alexnet_repair.experiments.submission import Submission, record_path
from sweeptools import ROOT, _env, common, rows_of

SACCT_NOTE = "need Slurm accounting"
LIMIT_S = 900                   # the whole real-Slurm sweep, queueing included; then its jobs are cancelled


def _stand_ins(folder: Path, monkeypatch, squeue: str, sacct: str = "echo 'Slurm accounting storage is disabled' "
               ">&2; exit 1") -> Path:
    """squeue and sacct scripts (shell bodies) first on PATH; each call's arguments go to <name>.args."""
    folder.mkdir(exist_ok=True)
    for name, body in (("squeue", squeue), ("sacct", sacct)):
        (folder / name).write_text(f'#!/bin/sh\necho "$@" >> {folder}/{name}.args\n{body}\n')
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def _result(folder: Path, job_id: str, outcome: str) -> None:
    """The result file submitit's task writes when it ends (outcome 'success' or 'error')."""
    from submitit.core.utils import JobPaths, cloudpickle_dump

    path = JobPaths(folder, job_id=job_id).result_pickle
    path.parent.mkdir(parents=True, exist_ok=True)
    cloudpickle_dump((outcome, 0), path)


def test_squeue_and_sacct_lines_are_parsed():
    squeue = "42_0 RUNNING\n42_[3-5,7%2] PENDING\n  \n43 COMPLETING\n"
    assert parse_states(squeue, " ") == {"42_0": "RUNNING", "42_3": "PENDING", "42_4": "PENDING",
                                         "42_5": "PENDING", "42_7": "PENDING", "43": "COMPLETING"}
    sacct = "42_1|CANCELLED by 0\n42_1.batch|CANCELLED\n42_2|TIMEOUT\n44|\n"
    assert parse_states(sacct, "|") == {"42_1": "CANCELLED", "42_2": "TIMEOUT"}


def test_states_come_from_squeue_then_result_files_then_sacct(tmp_path, monkeypatch, caplog):
    logs = tmp_path / "logs"
    bin_dir = _stand_ins(tmp_path / "bin", monkeypatch, squeue="printf '42_0 RUNNING\\n42_[1-2] PENDING\\n'")
    _result(logs, "42_3", "success")
    _result(logs, "42_4", "error")
    _result(logs, "42_0", "success")         # squeue, asked first, still says RUNNING: it wins
    ids = [f"42_{i}" for i in range(6)]
    states, notes = slurm_states(logs, ids)
    assert states == {"42_0": "RUNNING", "42_1": "PENDING", "42_2": "PENDING", "42_3": "COMPLETED",
                      "42_4": "FAILED", "42_5": "UNKNOWN"}
    assert len(notes) == 1 and SACCT_NOTE in notes[0] and "storage is disabled" in notes[0]
    assert (bin_dir / "squeue.args").read_text().split() == ["-h", "-r", "-t", "all", "-j", ",".join(ids), "-o",
                                                            "%i", "%T"]
    assert "-j 42_5" in (bin_dir / "sacct.args").read_text()          # only what no one else knew
    assert "sacct" not in caplog.text                                   # no warning per call


def test_status_says_the_sacct_note_once(tmp_path, monkeypatch):
    _stand_ins(tmp_path / "bin", monkeypatch, squeue="echo '7_0 RUNNING'")
    sub = sb.new_submission("grid", ["grid"], [f"run{i}" for i in range(4)], tmp_path / "s.csv", 4, "slurm", {},
                            ROOT / "experiment_runner.py")
    for i, part in enumerate(sub.shards):
        part.job_ids.append(f"7_{i}")
    _result(Path(sub.folder), "7_1", "success")
    sub.save(record_path(tmp_path / "s.csv"))
    table = sb.status_table(Submission.load(record_path(tmp_path / "s.csv")))
    assert [re.split(r"\s+", line.strip())[2] for line in table.splitlines()[2:6]] == \
        ["RUNNING", "COMPLETED", "UNKNOWN", "UNKNOWN"]
    assert table.count(SACCT_NOTE) == 1 and table.splitlines()[-1].startswith("note: ")


def test_squeue_that_cannot_answer_leaves_states_unknown_with_a_note(tmp_path, monkeypatch):
    _stand_ins(tmp_path / "bin", monkeypatch, squeue="echo 'slurm_load_jobs error: Unable to contact slurm "
               "controller' >&2; exit 1")
    states, notes = slurm_states(tmp_path, ["9"])
    assert states == {"9": "UNKNOWN"} and len(notes) == 2 and "Unable to contact" in notes[0]
    _stand_ins(tmp_path / "bin", monkeypatch, squeue="echo 'slurm_load_jobs error: Invalid job id specified' >&2; "
               "exit 1", sacct="echo '9|OUT_OF_MEMORY'")
    assert slurm_states(tmp_path, ["9"]) == ({"9": "OUT_OF_MEMORY"}, [])      # squeue forgot it; sacct knows


def test_waiting_ends_when_jobs_leave_the_queue_without_sacct(tmp_path, monkeypatch):
    """A job with a result file is done; one squeue lists no more is done after the grace for its file."""
    bin_dir = _stand_ins(tmp_path / "bin", monkeypatch, squeue="true",
                         sacct="echo sacct asked >&2; exit 1")
    _result(tmp_path, "5_0", "success")
    start = time.monotonic()
    wait_slurm(tmp_path, ["5_0", "5_1"], grace_s=0.5, longest_pause_s=0.2)
    assert time.monotonic() - start < 10 and not (bin_dir / "sacct.args").exists()


def _slurm_unusable() -> str | None:
    """Why no Slurm can take a job here (None when sinfo shows a partition up)."""
    if not shutil.which("sbatch"):
        return "no sbatch on PATH (scripts/slurm_single_node.sh starts a single-node Slurm)"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo does not answer: {err}"
    if done.returncode or "up" not in done.stdout.split():
        return (f"sinfo shows no partition up ({' '.join((done.stderr or done.stdout).split())[:200]}); "
                f"scripts/slurm_single_node.sh starts a single-node Slurm")
    return None


def _states(status: str) -> list[str]:
    """The state column of each shard line of a status table."""
    return [m.group(1) for m in re.finditer(r"^\s+\d+/\d+\s+\S+\s+(\S+)", status, re.M)]


@pytest.mark.slurm
@pytest.mark.slow
def test_a_grid_on_slurm_is_followed_and_collected(workdir, cifar_dir, quiet_checkpoint, capsys):
    """6 runs in 3 array tasks through sbatch with --wait, status polled meanwhile; then collected, all COMPLETED."""
    why = _slurm_unusable()
    if why:
        pytest.skip(why)
    grid = [*common(cifar_dir, quiet_checkpoint), "--repair-set-sizes", "3", "6", "--repair-set-types",
            "misclassified", "class_homogeneous_incorrect", "--target-classes", "3", "5", "--param-bound", "20",
            "--margin", "0.05", "--output-file", "results/slurm.csv", "--submit", "slurm", "--shards", "3",
            "--slurm-time", "20"]
    record = record_path("results/slurm.csv")
    with open("runner.out", "w") as out, open("runner.err", "w") as err:
        runner = subprocess.Popen([sys.executable, str(ROOT / "experiment_runner.py"), *grid, "--wait"],
                                  stdout=out, stderr=err, env=_env())
    seen = []
    try:
        deadline = time.monotonic() + LIMIT_S
        while runner.poll() is None:
            assert time.monotonic() < deadline, f"the sweep took over {LIMIT_S} s"
            if record.is_file() and all(s.job_ids for s in Submission.load(record).shards):
                assert experiment_runner.main(["status", str(record)]) == 0
                status = capsys.readouterr().out
                seen.append(_states(status))
                assert "UNKNOWN" not in seen[-1] and status.count(SACCT_NOTE) <= 1, status
            time.sleep(2)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
            if record.is_file():     # this test's jobs only
                jobs = [s.job_ids[-1] for s in Submission.load(record).shards if s.job_ids]
                subprocess.run(["scancel", *jobs], timeout=30, check=False)
    text = Path("runner.out").read_text() + Path("runner.err").read_text()
    assert runner.returncode == 0, text[-3000:]
    assert "collected" in text and text.count(SACCT_NOTE) <= 1 and "Bypassing sacct" not in text, text[-3000:]
    assert any(seen) and all(state.startswith(ACTIVE) or state == "COMPLETED" for states in seen for state in states)
    ids = [s.experiment_id for s in build_grid(["misclassified", "class_homogeneous_incorrect"], [3, 6], [3, 5],
                                               [20.0], [0.05], solver="highs")]
    assert sorted(r["experiment_id"] for r in rows_of("results/slurm.csv")) == sorted(ids)
    assert experiment_runner.main(["status", str(record)]) == 0
    status = capsys.readouterr().out
    assert _states(status) == ["COMPLETED"] * 3 and "total: 6/6 runs done" in status
    assert status.count(SACCT_NOTE) <= 1
