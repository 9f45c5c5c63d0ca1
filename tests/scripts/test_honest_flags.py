"""Flags do what they say, through the scripts: a named solver solves (or a one-line error says why not), a sweep
over --solvers compares solvers, the progress lines, and a --preserve-split test drawdown without the preserve
images."""

from __future__ import annotations

import io
import json
import logging

import pytest

import experiment_runner
import run_repair
from alexnet_repair.cli import setup_logging
from sweeptools import common, rows_of


def _repair(workdir, capsys, checkpoint, cifar_dir, *extra) -> tuple[int, dict | None, str]:
    code = run_repair.main(["misclassified", "--weights", str(checkpoint), "--margin", "0.5", "--data-dir",
                            str(cifar_dir), "--no-download", "--quiet", "--threads", "1", "--json", *extra])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


@pytest.mark.parametrize("solver, expected", [("auto", "builtin-ipm"), ("highs", "highs")])
def test_the_named_solver_solves(workdir, capsys, editset_file, fitted_checkpoint, cifar_dir, solver, expected):
    code, record, err = _repair(workdir, capsys, fitted_checkpoint, cifar_dir, "--solver", solver)
    assert code == 0, err
    assert record["solver"] == expected and record["config"]["solver"] == solver
    assert (expected == "builtin-ipm") == (record["formulation"] == "ipm")


def test_formulation_ipm_with_a_named_solver_is_a_usage_error(workdir, capsys, editset_file, fitted_checkpoint,
                                                              cifar_dir):
    code, record, err = _repair(workdir, capsys, fitted_checkpoint, cifar_dir, "--solver", "highs",
                                "--formulation", "ipm")
    assert code == 2 and record is None
    assert len(err.strip().splitlines()) == 1 and "builtin-ipm" in err
    assert not (workdir / "artifacts" / "alexnet_repaired.pth").exists()


@pytest.mark.gurobi
def test_gurobi_solves_or_says_why_not(workdir, capsys, editset_file, fitted_checkpoint, cifar_dir):
    """--solver gurobi: Gurobi solves (column generation's masters fit a size-limited licence here); the full LP
    (--formulation straightforward) does not fit one: a one-line error, nothing written, no switch to another solver."""
    from alexnet_repair.solvers import gurobi
    code, record, err = _repair(workdir, capsys, fitted_checkpoint, cifar_dir, "--solver", "gurobi")
    assert code == 0, err
    assert record["solver"] == "gurobi" and record["formulation"] == "colgen"
    if gurobi.licence_limit() is None:
        return
    (workdir / "artifacts" / "alexnet_repaired.pth").write_bytes(b"keep me")
    code, record, err = _repair(workdir, capsys, fitted_checkpoint, cifar_dir, "--solver", "gurobi",
                                "--formulation", "straightforward")
    assert code != 0 and "size-limited" in err and "builtin" not in err
    assert record is None or record["status"] == "error"
    assert (workdir / "artifacts" / "alexnet_repaired.pth").read_bytes() == b"keep me"


def test_a_sweep_over_solvers_compares_them(workdir, cifar_dir, quiet_checkpoint):
    out = workdir / "results" / "solvers.csv"
    assert experiment_runner.main([*common(cifar_dir, quiet_checkpoint), "--solvers", "auto", "highs",
                                   "--repair-set-types", "misclassified", "--repair-set-sizes", "3",
                                   "--param-bound", "20", "--margin", "0.05", "--output-file", str(out)]) == 0
    rows = {r["solver_requested"]: r for r in rows_of(out)}
    assert set(rows) == {"auto", "highs"} and all(r["status"] == "success" for r in rows.values())
    assert rows["highs"]["solver"] == "highs" and "ipm" not in rows["highs"]["formulation"]
    assert rows["auto"]["formulation"].startswith("ipm"), rows["auto"]["formulation"]  # the built-in IPM first
    assert rows["auto"]["experiment_id"].endswith("_aprnn_auto")
    assert rows["highs"]["experiment_id"] == rows["auto"]["experiment_id"].replace("_auto", "_highs")


def test_progress_lines_on_a_terminal_only(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    progress = logging.getLogger("alexnet_repair.progress")
    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr("sys.stderr", stream)
        setup_logging("WARNING", progress=True)
        progress.info("round 1: 3 preserve images in the LP")
        assert ("round 1: 3 preserve images in the LP\n" in stream.getvalue()) == shown
    setup_logging("WARNING", progress=False)


def test_preserve_split_test_leaves_the_preserve_images_out_of_the_drawdown(workdir, capsys, editset_file,
                                                                            fitted_checkpoint, cifar_dir):
    code, plain, err = _repair(workdir, capsys, fitted_checkpoint, cifar_dir)
    assert code == 0, err
    code, record, err = _repair(workdir, capsys, fitted_checkpoint, cifar_dir, "--preserve", "5",
                                "--preserve-split", "test", "--output", "artifacts/p.pth")
    assert code == 0, err
    metrics, preserved = record["metrics"], record["preserve_indices"]
    assert len(preserved) == 5 and metrics["drawdown_excludes_preserve"] == 5
    assert metrics["drawdown_set_size"] == plain["metrics"]["drawdown_set_size"] - 5
    code = run_repair.main(["misclassified", "--weights", str(fitted_checkpoint), "--margin", "0.5", "--data-dir",
                            str(cifar_dir), "--no-download", "--quiet", "--threads", "1", "--preserve", "5",
                            "--preserve-split", "test", "--output", "artifacts/p2.pth"])
    assert code == 0
    assert "or the preserve set (5 test images held by construction)" in capsys.readouterr().out
