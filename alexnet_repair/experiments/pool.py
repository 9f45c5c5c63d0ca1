"""Worker processes for sweeps: spawn (torch and fork do not mix), the cores divided between workers.

Each worker builds its state once (``init_fn(*init_args)``, e.g. load the model) and then runs
``fn(state, item)`` per item; results come back to the parent as they finish. :func:`run_all` does the same
in this process when one job is asked for.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from contextlib import contextmanager

import torch

from ..errors import AlexRepairError

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def threads_per_worker(jobs: int, threads: int | None = None) -> int:
    """``threads`` if given, else the cores divided between ``jobs`` workers (at least 1)."""
    return threads or max(1, available_cores() // max(jobs, 1))


@contextmanager
def worker_env(threads: int):
    """BLAS/OpenMP thread counts for worker processes started inside the block (the parent's are restored)."""
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update({name: str(threads) for name in THREAD_ENV})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_STATE: dict = {}


def _init(init_fn, init_args, threads: int, log_level: int) -> None:
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(threads)
    _STATE["state"] = init_fn(*init_args)


def _call(fn, item):
    return fn(_STATE["state"], item)


def run_pool(fn, items: list, init_fn, init_args: tuple, jobs: int, threads: int, on_result) -> None:
    """Run ``fn(state, item)`` for every item in ``jobs`` spawned workers; ``on_result`` sees each result."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init,
                               initargs=(init_fn, init_args, threads, logging.getLogger().level))
    try:
        with worker_env(threads):       # workers start on submit and read their thread counts at import
            futures = [pool.submit(_call, fn, item) for item in items]
        for future in as_completed(futures):
            on_result(future.result())
    except BrokenProcessPool:
        raise AlexRepairError("a worker process died (out of memory?): the rows written so far are kept; "
                              "rerun the same command to continue, perhaps with fewer --jobs") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def run_all(fn, items: list, init_fn, init_args: tuple, jobs: int, threads: int, on_result) -> None:
    """:func:`run_pool`, or with ``jobs <= 1`` the same calls in this process (in order, one state)."""
    if jobs > 1:
        run_pool(fn, items, init_fn, init_args, jobs, threads, on_result)
        return
    torch.set_num_threads(threads)
    state = init_fn(*init_args)
    for item in items:
        on_result(fn(state, item))
