"""What one invocation of a sweep has to do: its shard of the runs, what the CSV already holds (resume and the
setup-key check), the state of each run for ``--list``, and merging the CSVs of several shards.

A grid run's key is its ``experiment_id``; rerunning a sweep skips every id already in the CSV (failed ones too,
unless ``retry_failed``). Shard I/N (1-based) takes positions I-1, I-1+N, ... of the runs (or chains).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .csvstore import is_true, merge_csvs, read_csv
from .schema import row_key


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'2/4' -> (2, 4): the 2nd of 4 slices (1-based, like a SLURM array 1-4)."""
    if text is None:
        return None
    try:
        index, count = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: use I/N, e.g. 1/4 (I from 1 to N)") from None
    if not 1 <= index <= count:
        raise UsageError(f"--shard {text!r}: I must lie in 1..N")
    return index, count


def shard(specs: list, index: int, count: int) -> list:
    """The ``index``-th (1-based) of ``count`` round-robin slices: together they partition ``specs`` exactly."""
    return [s for i, s in enumerate(specs) if i % count == index - 1]


def completed_rows(path: str | Path) -> dict[str, dict]:
    """experiment_id -> row of a sweep CSV (the last row wins)."""
    _, rows = read_csv(path)
    return {row["experiment_id"]: row for row in rows if row.get("experiment_id")}


def check_resumable(path, rows, sweep_key: str, chains: bool = False) -> None:
    """UsageError unless every row (dicts, e.g. ``completed_rows(path).values()``) was made under ``sweep_key``."""
    keys = {row.get("sweep_key") for row in rows} - {sweep_key}
    if keys and chains:
        raise UsageError(f"{path} holds chains of another setup (checkpoint, dataset, split or "
                         f"--full-set-size differ): choose another --output-file")
    if keys:
        raise UsageError(f"{path} holds runs of another sweep setup (checkpoint, dataset, edit split, sizing, "
                         f"holdout fraction, or an earlier version's sweep-wide --objective differ: key "
                         f"{sorted(keys)[0]}, now {sweep_key}): choose another --output-file")


def plan(specs: list, done: dict[str, dict], retry_failed: bool) -> list:
    """The grid runs still to do: ids not in ``done``, plus failed ones when ``retry_failed``."""
    return [s for s in specs if s.experiment_id not in done
            or (retry_failed and not is_true(done[s.experiment_id].get("success")))]


def grid_states(path, specs: list) -> list[tuple[str, str]]:
    """(experiment_id, status in the CSV or 'todo') of every grid run."""
    done = completed_rows(path)
    return [(s.experiment_id, done[s.experiment_id].get("status", "?") if s.experiment_id in done else "todo")
            for s in specs]


def chain_progress(path, chains: list) -> list[tuple[str, int]]:
    """(chain_id, iterations in the CSV) of every stochastic chain."""
    _, rows = read_csv(path)
    counts = {}
    for r in rows:
        counts[r["experiment_id"]] = max(counts.get(r["experiment_id"], 0), int(r["iteration"]))
    return [(c.chain_id, counts.get(c.chain_id, 0)) for c in chains]


def merge_sweeps(inputs: list, output, force: bool = False) -> int:
    """Combine grid or stochastic CSVs (the kind read from the first one's header) into ``output``; returns the
    row count. An existing ``output`` that is not among the inputs is replaced only with ``force``."""
    out = Path(output)
    inputs = [str(p) for p in inputs]
    if out.exists() and out.resolve() not in {Path(p).resolve() for p in inputs} and not force:
        raise UsageError(f"{out} exists: list it among the inputs to merge into it, or pass --force to replace it")
    header, _ = read_csv(inputs[0])
    return merge_csvs(inputs, out, key=row_key(header))
