"""Sweeps run as scheduler jobs through ``submitit``: one job-array task per shard, on Slurm or on this machine.

A task (:class:`ShardTask`) runs experiment_runner.py's ``main`` with ``--shard I/N`` into the shard's own CSV: the
same code path as a shard started by hand, so it resumes whatever the shard's CSV already holds. Preempted or timed
out on Slurm, submitit requeues it (its ``checkpoint``); failed or killed, it is submitted again (``resubmit``).
submitit is imported only in the functions that use it, so the package imports without it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

from ..errors import AlexRepairError, UsageError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm")
DEFAULT_TIME_MIN = 24 * 60         # a task's time limit unless --slurm-time says otherwise (it is requeued after)


class ShardTask:
    """One shard of a submitted sweep: ``main(argv)`` of the script at ``script``, run in ``cwd``."""

    def __init__(self, script: str, cwd: str, argv: list[str]):
        self.script, self.cwd, self.argv = str(script), str(cwd), list(argv)

    def __call__(self) -> int:
        os.chdir(self.cwd)
        name = Path(self.script).stem
        spec = importlib.util.spec_from_file_location(name, self.script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        code = module.main(self.argv)
        if code:
            raise AlexRepairError(f"{Path(self.script).name} {' '.join(self.argv[:1])} exited with {code}: see the "
                                  f"error above in this task's log")
        return 0

    def checkpoint(self, *args, **kwargs):
        """Preemption or time limit: requeue the same shard (it resumes from its CSV)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(ShardTask(self.script, self.cwd, self.argv))


def slurm_minutes(text: str | None) -> int:
    """A Slurm time limit in whole minutes: 'M', 'M:S', 'H:M:S', 'D-H', 'D-H:M' or 'D-H:M:S'."""
    if text is None:
        return DEFAULT_TIME_MIN
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not match:
        raise UsageError(f"--slurm-time {text!r}: use minutes, H:M:S or D-H:M:S (e.g. 90, 4:00:00, 1-12:00:00)")
    days, a, b, c = (int(g) if g is not None else None for g in match.groups())
    if days is not None:                    # D-H[:M[:S]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:                     # H:M:S
        seconds = a * 3600 + b * 60 + c
    else:                                   # M[:S]
        seconds = a * 60 + (b or 0)
    if seconds <= 0:
        raise UsageError(f"--slurm-time {text!r} must be positive")
    return -(-seconds // 60)


def extra_parameters(items: list[str] | None) -> dict:
    """``--slurm-extra KEY=VALUE`` items -> {KEY: VALUE} (sbatch flags submitit has no parameter for)."""
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--slurm-extra {item!r}: use KEY=VALUE, e.g. account=myproject or qos=high")
        out[key.strip().lstrip("-")] = value
    return out


def executor_parameters(kind: str, name: str, time: str | None = None, partition: str | None = None,
                        cpus: int | None = None, mem: str | None = None, gpus: int | None = None,
                        extra: list[str] | None = None) -> dict:
    """submitit's parameters of the executor ``kind`` ('slurm': sbatch's; 'local': a time limit and GPUs)."""
    minutes = slurm_minutes(time)
    if kind == "local":
        return {"timeout_min": minutes, "gpus_per_node": gpus or 0}
    params = {"job_name": name, "time": minutes, "cpus_per_task": cpus, "partition": partition, "mem": mem,
              "gpus_per_node": gpus, "additional_parameters": extra_parameters(extra)}
    return {k: v for k, v in params.items() if v not in (None, {})}


def make_executor(kind: str, folder, parameters: dict):
    """A submitit executor writing its job files and logs to ``folder``."""
    try:
        import submitit
    except ImportError:
        raise UsageError("--submit needs the submitit package (uv sync installs it)") from None
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
    elif kind == "slurm":
        try:
            executor = submitit.SlurmExecutor(folder=folder)
        except RuntimeError as err:          # no srun on this machine
            raise UsageError(f"--submit slurm: {err} (submit from a Slurm login node)") from None
    else:
        raise UsageError(f"unknown executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    try:
        executor.update_parameters(**parameters)
    except ValueError as err:
        raise UsageError(f"--slurm-* flags: {str(err).splitlines()[0]}") from None
    return executor


def submit_tasks(kind: str, folder, parameters: dict, tasks: list[ShardTask]) -> list:
    """Submit ``tasks`` as one job array; returns submitit's jobs (``job.job_id``)."""
    executor = make_executor(kind, folder, parameters)
    try:
        return executor.submit_array(tasks)
    except Exception as err:     # sbatch refused (partition, time, account...): its message, on one line
        if isinstance(err, AlexRepairError):
            raise
        raise UsageError(f"submission failed: {' '.join(str(err).split())[:400]}") from None


def job_state(kind: str, folder, job_id: str) -> str:
    """The scheduler's state of a job: Slurm's (via sacct; UNKNOWN when it cannot say), or for a local job
    COMPLETED / FAILED (from its result file), RUNNING (its process lives) or STOPPED (killed without a result)."""
    import submitit

    if kind == "slurm":
        return submitit.SlurmJob(folder=folder, job_id=str(job_id)).state
    job = submitit.LocalJob(folder=folder, job_id=str(job_id))
    if job.paths.result_pickle.exists():
        outcome = submitit.core.utils.pickle_load(job.paths.result_pickle)[0]
        return "COMPLETED" if outcome == "success" else "FAILED"
    return "RUNNING" if _alive(int(job_id)) else "STOPPED"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, finished but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
