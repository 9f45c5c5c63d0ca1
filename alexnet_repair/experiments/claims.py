"""Claims on the runs of a sweep CSV, so that several runners (processes, shards, array tasks) writing one CSV split
its runs: a run (grid experiment id or stochastic chain id) is claimed before it starts and the claim is held until
its row is written.

A claim is an OS file lock (``filelock``) on ``<csv>.claims/<id>.lock``. The operating system drops the lock when
its process ends, however it ends, so the claim of a runner killed with ``kill -9`` is simply free again and the
next runner to try takes the run over; the lock files themselves stay (an empty file is not a claim). Whoever holds
a claim must re-read the CSV before running: another runner may have finished the run in the meantime.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..paths import path_for, safe_name

# How long a runner waits for a claim before leaving the run to its holder: not at all, so that a runner behind
# another one moves past the run in progress at once instead of trailing it. (A status probe holds a free claim for
# microseconds; a runner that meets it skips that run, then takes it in its pass over the claims left at the end.)
CLAIM_WAIT_S = 0.0


class Claims:
    """The claims of one sweep CSV."""

    def __init__(self, csv_path: str | Path, wait: float = CLAIM_WAIT_S):
        self.folder = path_for("claims", sweep_csv=csv_path)
        self.wait = wait

    def path(self, key: str) -> Path:
        return self.folder / f"{safe_name(key)}.lock"

    @contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """Claim ``key`` for the block: yields True while this process holds it, False when another one does."""
        with self._locked(key, self.wait) as got:
            yield got

    def held(self, key: str) -> bool:
        """Whether another process holds ``key`` now (a probe: a free claim is taken and dropped at once)."""
        if not self.path(key).exists():
            return False
        with self._locked(key, 0) as got:
            return not got

    def held_among(self, keys) -> list[str]:
        """The ``keys`` some process holds now (runs in progress)."""
        return [k for k in keys if self.held(k)]

    @contextmanager
    def _locked(self, key: str, wait: float) -> Iterator[bool]:
        from filelock import FileLock, Timeout

        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path(key), timeout=wait)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
