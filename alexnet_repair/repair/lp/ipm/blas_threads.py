"""Limit the OpenBLAS threads numpy and scipy use, for the duration of a ``with`` block.

The IPM makes many mid-sized BLAS/LAPACK calls; on a machine that is busy with other
processes (parallel sweeps, other solvers) OpenBLAS's spinning worker threads slow it down
several times over, and small factorisations are faster on one thread even on an idle box (threads_for;
measured: bench/README.md, "Tuning").
This is the small part of threadpoolctl that we need (Linux: finds the loaded OpenBLAS
libraries in /proc/self/maps); elsewhere, or when no symbol is found, it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)

_SYMBOLS = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads")]
_cache: list | None = None


def _libraries() -> list:
    global _cache
    if _cache is not None:
        return _cache
    _cache = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return _cache
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                _cache.append((getattr(lib, get_name), getattr(lib, set_name)))
                break
    return _cache


@contextmanager
def blas_threads(n: int | None):
    """Run the block with ``n`` OpenBLAS threads (None: leave the setting alone)."""
    libs = _libraries() if n else []
    old = [get() for get, _ in libs]
    for _, set_ in libs:
        set_(int(n))
    try:
        yield
    finally:
        for (_, set_), k in zip(libs, old):
            set_(k)


def idle_cores(window: float = 0.1) -> int:
    """Cores not busy with other work right now, at least 1: the idle share of all cores over the next ``window``
    seconds (Linux /proc/stat, less this process's own CPU time: it sleeps meanwhile, so only other work counts), else the 1-minute load
    average (less one unit for this process's own work; it lags a minute behind, so a process that has just
    ended still counts).

    The IPM runs its BLAS with this many threads (threads_for: when its factorisations are large enough) unless
    told otherwise: all cores on an idle machine, one on a loaded one (see the module doc)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        before, own0, t0 = _cpu_times(), time.process_time(), time.perf_counter()
        time.sleep(window)
        after, own1, t1 = _cpu_times(), time.process_time(), time.perf_counter()
        total, idle = after[0] - before[0], after[1] - before[1]
        if total > 0:
            # cores' worth of other work (jiffy-coarse), less this process's own: after a product OpenBLAS's
            # threads spin for a while, and counting them made the IPM run on one thread after any numpy product
            busy = (1.0 - idle / total) * (os.cpu_count() or cores) - (own1 - own0) / (t1 - t0)
            return max(1, min(cores, cores - int(busy + 0.25)))
    except (OSError, ValueError, IndexError):
        pass
    try:
        busy = os.getloadavg()[0]
    except OSError:
        return 1
    return max(1, min(cores, int(cores - busy + 1.5)))  # +1: our own work is part of the load


def _cpu_times() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of all cores so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4]


PARALLEL_FLOPS = 8e9  # below this many flops a factorisation, the IPM runs BLAS on one thread: on 2 cores a second
#                       thread's spinning competes with the IPM's own numpy work; the crossover is about 500 last-layer
#                       points a block (8.5e9 flops)


def threads_for(flops: float) -> int:
    """BLAS threads for an IPM whose factorisations cost ``flops`` each: one for small ones, else the idle cores."""
    return 1 if flops < PARALLEL_FLOPS else idle_cores()
