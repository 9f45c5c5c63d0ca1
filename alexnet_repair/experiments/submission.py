"""The record of a submitted sweep (``<csv stem>.submit/submission.json``): its shards, their CSVs and jobs; each
shard's progress read from its CSV (and its claims); the shard CSVs merged into the sweep's CSV.

The record is written atomically when the sweep is submitted and again when a shard is resubmitted. Everything
``status`` and ``collect`` say comes from it and the shard CSVs, so they work from any shell, at any time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DataError
from ..fileio import write_json
from ..paths import path_for
from .claims import Claims
from .csvstore import is_true, read_csv
from .plan import merge_sweeps

RECORD = "submission.json"
VERSION = "alexnet_repair.submission/1"


@dataclass
class Shard:
    index: int                  # 1-based, as in --shard I/N
    count: int
    csv: str
    ids: list[str]              # the experiment ids (grid) or chain ids (stochastic) of this shard
    job_ids: list[str] = field(default_factory=list)     # every job that ran it, the latest last

    @property
    def name(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class Submission:
    command: str                # grid | stochastic
    argv: list[str]             # the sweep's own arguments (the command first)
    cwd: str
    script: str
    executor: str               # local | slurm
    parameters: dict            # the executor's parameters (to resubmit with the same)
    folder: str                 # submitit's job files and logs
    output_file: str            # what collect writes
    iterations: int | None      # stochastic: iterations per chain
    shards: list[Shard]
    jobs: int = 1               # worker processes per task (--jobs)
    created: str = ""
    version: str = VERSION

    def save(self, path) -> Path:
        return write_json(path, asdict(self))

    @classmethod
    def load(cls, path) -> "Submission":
        path = Path(path)
        if path.is_dir():
            path = path / RECORD
        try:
            data = json.loads(path.read_text())
            if data.get("version") != VERSION:
                raise DataError(f"{path} is not a submission record of this toolkit (version {data.get('version')})")
            data["shards"] = [Shard(**s) for s in data["shards"]]
            return cls(**data)
        except FileNotFoundError:
            raise DataError(f"{path}: no such submission record") from None
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise DataError(f"{path} is not a readable submission record ({type(err).__name__}: {err})") from None

    def shard_argv(self, shard: Shard) -> list[str]:
        """The task's arguments: the sweep's, then (later flags win) its shard, its CSV, no download, no submit."""
        return [*self.argv, "--submit", "none", "--shard", shard.name, "--output-file", shard.csv, "--no-download"]

    def total(self, shard: Shard) -> int:
        return len(shard.ids) * (self.iterations or 1)


def record_path(sweep_csv) -> Path:
    return path_for("submission", sweep_csv=sweep_csv) / RECORD


def shard_csv(sweep_csv, index: int, count: int) -> Path:
    return path_for("submission", sweep_csv=sweep_csv) / f"shard-{index}-of-{count}.csv"


def shard_progress(sub: Submission, shard: Shard) -> dict:
    """Rows done (grid: runs; stochastic: iterations; a chain whose full set could not be drawn counts whole), of
    them failed, and runs or chains in progress (their claims are held) of one shard, read from its CSV."""
    _, rows = read_csv(shard.csv)
    ids = set(shard.ids)
    rows = [r for r in rows if r.get("experiment_id") in ids]
    if sub.iterations is None:
        latest = {r["experiment_id"]: r for r in rows}
        done, failed = len(latest), sum(not is_true(r.get("success")) for r in latest.values())
        finished = set(latest)
    else:
        its = {}
        for r in rows:
            its.setdefault(r["experiment_id"], set()).add(int(r["iteration"]))
        counts = {k: sub.iterations if 0 in v else len(v - {0}) for k, v in its.items()}
        done, failed = sum(counts.values()), sum(not is_true(r.get("success")) for r in rows)
        finished = {k for k, n in counts.items() if n >= sub.iterations}
    running = len(Claims(shard.csv).held_among(sorted(ids - finished)))
    return {"shard": shard.name, "done": done, "total": sub.total(shard), "failed": failed, "running": running,
            "csv": shard.csv}


def collect(sub: Submission, output=None, force: bool = False) -> tuple[int, list[str]]:
    """Merge the shard CSVs that exist (and ``output`` itself when it exists, unless ``force``) into ``output``
    (default: the sweep's --output-file), with merge's rules; returns (rows, the inputs)."""
    output = Path(output or sub.output_file)
    inputs = [s.csv for s in sub.shards if Path(s.csv).is_file()]
    if not inputs:
        raise DataError("no shard has written a row yet: nothing to collect (see status)")
    if output.is_file() and not force:
        inputs = [str(output), *inputs]
    return merge_sweeps(inputs, output, force=force), inputs
