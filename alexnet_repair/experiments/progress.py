"""Progress of a sweep: a tqdm bar on a terminal; elsewhere (a log file, a batch job) one line per finished run,
or every few runs on a long sweep, e.g. ``sweep: 12/48 runs done, 0 failed, ~3 min left``. The time left is the
time per finished run so far in this process (wall clock, so parallel workers are counted) times the runs left.
"""

from __future__ import annotations

import sys
import time

from .csvstore import read_csv

LINES = 50          # at most about this many progress lines per sweep when not on a terminal


def duration_text(seconds: float) -> str:
    """A rough duration: '40 s', '3 min', '2.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(seconds_per_run: list[float], todo: int, jobs: int) -> float | None:
    """Mean seconds of the finished runs x the runs to do / jobs; None without finished runs."""
    if not seconds_per_run or not todo:
        return None
    return sum(seconds_per_run) / len(seconds_per_run) * todo / max(jobs, 1)


def estimate_text(seconds_per_run: list[float], todo: int, workers: int, unit: str = "run") -> str:
    """The overview's time line: an estimate from finished runs (e.g. rows already in the CSV), or when it comes."""
    guess = estimate(seconds_per_run, todo, workers)
    if guess is None:
        return f"time: estimated once the first {unit}s finish" if todo else f"no {unit} to do"
    mean = sum(seconds_per_run) / len(seconds_per_run)
    return (f"estimated ~{duration_text(guess)} ({mean:.1f} s per finished {unit} x {todo} to do / {max(workers, 1)} "
            f"at a time)")


def seconds_per_row(paths) -> list[float]:
    """Seconds of each finished run (grid ``wall_time``) or iteration (stochastic ``batch_repair_time``) in ``paths``."""
    out = []
    for path in paths:
        for row in read_csv(path)[1]:
            try:
                out.append(float(row.get("wall_time") or row.get("batch_repair_time")))
            except (TypeError, ValueError):
                continue
    return out


class Progress:
    """Counts finished runs (or iterations) of a sweep and shows them: a bar on a terminal, else lines on stderr.

    ``done``: already finished before this process started (counted in the total, not in the time per run).
    ``enabled=False`` (``--quiet``) shows nothing.
    """

    def __init__(self, total: int, desc: str, unit: str = "run", done: int = 0, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.desc, self.unit = total, done, desc, unit
        self.failed = self.elsewhere = self.here = 0
        self.start = time.monotonic()
        tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.lines = enabled and not tty
        self.every = max(1, total // LINES)
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, unit=unit, dynamic_ncols=True, file=self.stream)

    def update(self, n: int = 1, failed: int = 0, note: str = "") -> None:
        """``n`` finished here (``failed`` of them failed); ``note`` names the last one."""
        self.failed += failed
        self.here += n
        self._advance(n, note)

    def skip(self, n: int = 1, note: str = "") -> None:
        """``n`` left to another runner that holds their claims (or that finished them meanwhile)."""
        self.elsewhere += n
        self._advance(n, note)

    def retake(self, n: int) -> None:
        """``n`` of those left to other runners are to be run here after all (their runner died)."""
        self.elsewhere -= n
        self.done -= n
        if self.bar is not None:
            self.bar.update(-n)

    def _advance(self, n: int, note: str) -> None:
        before = self.done
        self.done += n
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
        elif self.lines and n and (self.done // self.every > before // self.every or self.done >= self.total):
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()

    def line(self, note: str = "") -> str:
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}s done, {self.failed} failed"
        if self.elsewhere:
            text += f", {self.elsewhere} left to other runners"
        left = self.seconds_left()
        if left is not None and self.done < self.total:
            text += f", ~{duration_text(left)} left"
        return text + (f" (last: {note})" if note else "")

    def seconds_left(self) -> float | None:
        if not self.here:
            return None
        return (time.monotonic() - self.start) / self.here * (self.total - self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
