"""Submitting a sweep as one job array (one task per shard) and following it: the shards and their record, the
overview shown before, the status of each shard, the shards to submit again, waiting for the tasks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..fileio import one_line
from .jobs import ACTIVE, ShardTask, executor_parameters, has_result, job_states, submit_tasks, wait_slurm
from .plan import shard
from .pool import available_cores
from .progress import duration_text, estimate, estimate_text, seconds_per_row
from .rows import timestamp
from .submission import Shard, Submission, collect, record_path, shard_csv, shard_progress

log = logging.getLogger(__name__)


def new_submission(command: str, argv: list[str], ids: list[str], output_file, shards: int, executor: str,
                   parameters: dict, script, jobs: int = 1, iterations: int | None = None) -> Submission:
    """The record of a sweep of ``ids`` (run or chain ids, in grid order) split into ``shards`` (at most one per id)."""
    count = max(1, min(shards, len(ids)))
    output = Path(output_file).resolve()
    parts = [Shard(index=i, count=count, csv=str(shard_csv(output, i, count)), ids=shard(ids, i, count))
             for i in range(1, count + 1)]
    return Submission(command=command, argv=list(argv), cwd=os.getcwd(), script=str(Path(script).resolve()),
                      executor=executor, parameters=parameters, folder=str(record_path(output).parent / "logs"),
                      output_file=str(output), iterations=iterations, shards=parts, jobs=jobs, created=timestamp())


def submission_from(args, specs: list, weights, script) -> Submission:
    """The record of experiment_runner.py's ``args`` (parsed, with ``args.argv`` the command line) for ``specs``
    (RunSpecs or ChainSpecs): shards, executor parameters, the tasks' arguments with the absolute ``weights``.

    Default shards: one per --jobs runs (chains); on this machine (local, every task at once) at most cores / --jobs.
    Without --threads each worker gets its share of the task's CPUs (Slurm: --slurm-cpus / --jobs; local: the cores
    / (tasks x --jobs)), passed to the task as --threads so that no task takes every core of a node.
    """
    ids = [s.experiment_id if args.command == "grid" else s.chain_id for s in specs]
    count = args.shards or -(-len(ids) // args.jobs)
    if args.submit == "local" and not args.shards:
        count = min(count, max(1, available_cores() // args.jobs))
    count = max(1, min(count, len(ids)))
    cpus = args.slurm_cpus or args.jobs * (args.threads or 1)
    threads = args.threads or max(1, (cpus if args.submit == "slurm" else available_cores() // count) // args.jobs)
    params = executor_parameters(args.submit, f"sweep-{Path(args.output_file).stem}", args.slurm_time,
                                 args.slurm_partition, cpus, args.slurm_mem, args.slurm_gpus, args.slurm_extra)
    argv = [*args.argv, "--weights", str(Path(weights).resolve()), "--threads", str(threads)]
    return new_submission(args.command, argv, ids, args.output_file, count, args.submit, params, script, args.jobs,
                          args.num_iterations if args.command == "stochastic" else None)


def submit(sub: Submission, shards: list[Shard] | None = None) -> list:
    """Submit ``shards`` (default: all) as one job array and save the record with their job ids; returns the jobs."""
    shards = sub.shards if shards is None else shards
    tasks = [ShardTask(sub.script, sub.cwd, sub.shard_argv(s)) for s in shards]
    jobs = submit_tasks(sub.executor, sub.folder, sub.parameters, tasks)
    for part, job in zip(shards, jobs):
        part.job_ids.append(str(job.job_id))
    sub.save(record_path(sub.output_file))
    return jobs


def overview(sub: Submission) -> str:
    """What is about to be submitted: the runs, the shards, an estimate (from rows already there), where it all goes."""
    unit = "run" if sub.iterations is None else "iteration"
    total = sum(sub.total(s) for s in sub.shards)
    done = sum(shard_progress(sub, s)["done"] for s in sub.shards)
    size = max(len(s.ids) for s in sub.shards)
    lines = [f"{sub.command}: {total} {unit}s ({done} already done) in {len(sub.shards)} shard(s) of at most {size} "
             f"{'chain' if sub.iterations else 'run'}(s), {sub.jobs} worker(s) each, on {sub.executor}"]
    lines.append(estimate_text(seconds_per_row([s.csv for s in sub.shards] + [sub.output_file]), total - done,
                               len(sub.shards) * sub.jobs, unit) + " (all tasks running at once)")
    folder = shown(record_path(sub.output_file).parent)
    lines.append(f"shard CSVs: {folder}/shard-*-of-{len(sub.shards)}.csv; logs: {shown(sub.folder)}/; "
                 f"collect merges them into {shown(sub.output_file)}")
    return "\n".join(lines)


def shown(path) -> str:
    """``path`` as printed: relative to the working directory when below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def status_table(sub: Submission) -> str:
    """Per shard: its job and the scheduler's state, rows done / total, failed, in progress; then the totals and a
    note per thing the scheduler could not be asked (e.g. sacct without accounting)."""
    unit = "runs" if sub.iterations is None else "iterations"
    lines = [f"{sub.command} sweep on {sub.executor}, {len(sub.shards)} shard(s); logs in {shown(sub.folder)}/",
             f"{'shard':>7} {'job':>14} {'state':<11} {'done':>11} {'failed':>6} {'running':>7}  csv"]
    totals = dict(done=0, total=0, failed=0, running=0)
    states, notes = states_of(sub, sub.shards)
    for part in sub.shards:
        p = shard_progress(sub, part)
        totals = {k: v + p[k] for k, v in totals.items()}
        lines.append(f"{part.name:>7} {(part.job_ids or ['-'])[-1]:>14} {states[part.index][:11]:<11} "
                     f"{p['done']:>5}/{p['total']:<5} {p['failed']:>6} {p['running']:>7}  {shown(part.csv)}")
    active = sum(state.upper().startswith(ACTIVE) for state in states.values())
    left = totals["total"] - totals["done"]
    guess = estimate(seconds_per_row([s.csv for s in sub.shards]), left, max(active, 1) * sub.jobs)
    lines.append(f"total: {totals['done']}/{totals['total']} {unit} done, {totals['failed']} failed, "
                 f"{totals['running']} in progress" + (f", ~{duration_text(guess)} left" if guess else ""))
    return "\n".join(lines + [f"note: {note}" for note in notes])


def states_of(sub: Submission, shards: list[Shard]) -> tuple[dict[int, str], list[str]]:
    """The scheduler's state of each shard's latest job, by shard index ('-' before any; UNKNOWN when it cannot
    say), asked once for all of them; and notes on what could not be asked."""
    latest = {s.index: s.job_ids[-1] for s in shards if s.job_ids}
    try:
        states, notes = job_states(sub.executor, sub.folder, list(latest.values()))
    except Exception as err:     # submitit missing, a junk job file: the CSVs still tell the rows
        log.debug("states of jobs %s: %s", ", ".join(latest.values()), err)
        states, notes = {}, []
    return {s.index: states.get(latest[s.index], "UNKNOWN") if s.index in latest else "-" for s in shards}, notes


def state_of(sub: Submission, part: Shard) -> str:
    """The scheduler's state of the shard's latest job (see states_of)."""
    return states_of(sub, [part])[0][part.index]


def to_resubmit(sub: Submission, indices: list[int] | None = None) -> list[Shard]:
    """The shards ``indices`` (1-based), else every unfinished shard whose job is not queued or running."""
    if indices:
        return [s for s in sub.shards if s.index in set(indices)]
    unfinished = [s for s in sub.shards if shard_progress(sub, s)["done"] < sub.total(s)]
    states, notes = states_of(sub, unfinished)
    for note in notes:
        log.warning("%s", note)
    return [s for s in unfinished if not states[s.index].upper().startswith(ACTIVE)]


def wait(sub: Submission, shards: list[Shard], jobs: list) -> list[str]:
    """Wait for ``jobs`` (of ``shards``); returns a line per failed one. Slurm jobs are followed through squeue and
    their result files (see jobs.wait_slurm), not submitit's sacct polling, which never ends without accounting
    for a task killed before it wrote its result."""
    if sub.executor == "slurm":
        wait_slurm(sub.folder, [str(job.job_id) for job in jobs])
    failed = []
    for part, job in zip(shards, jobs):
        if sub.executor == "slurm" and not has_result(sub.folder, job.job_id):
            failed.append(f"shard {part.name} (job {job.job_id}) ended without a result (cancelled, out of time or "
                          f"memory, or its node failed): see {shown(job.paths.stderr)}")
            continue
        job.wait()
        err = job.exception()
        if err is not None:
            failed.append(f"shard {part.name} (job {job.job_id}) failed: {one_line(ValueError(_why(err)), 300)}")
    return failed


def _why(err: Exception) -> str:
    """The line of submitit's error that says why: the last of the task's traceback (between its dashed rules), or
    the first two of a task that left no result (killed)."""
    text = str(err)
    if "-" * 22 in text:
        trace = [line for line in text.split("-" * 22)[1].splitlines() if line.strip()]
        return trace[-1] if trace else type(err).__name__
    return " ".join(text.splitlines()[:2])


def collect_text(sub: Submission, output=None, force: bool = False) -> str:
    """Collect the shard CSVs (see submission.collect) and say what was merged."""
    count, inputs = collect(sub, output, force)
    return f"collected {len(inputs)} file(s) into {shown(output or sub.output_file)}: {count} row(s)"


def follow_text(sub: Submission, record) -> str:
    """How to follow a submitted sweep: status, collect, logs, resubmit."""
    rec = shown(record)
    run = "uv run python experiment_runner.py"
    jobs = ", ".join(s.job_ids[-1] for s in sub.shards)
    return (f"submitted {len(sub.shards)} task(s) to {sub.executor} (job(s) {jobs}); record: {rec}\n"
            f"  progress:   {run} status {rec}\n"
            f"  results:    {run} collect {rec}   (merges the shard CSVs into {shown(sub.output_file)})\n"
            f"  logs:       {shown(sub.folder)}/<job id>_0_log.out and _0_log.err\n"
            f"  a task that failed or was killed: {run} resubmit {rec}")
