"""Sweeps run as scheduler jobs through ``submitit``: one job-array task per shard, on Slurm or on this machine.

A task (:class:`ShardTask`) runs experiment_runner.py's ``main`` with ``--shard I/N`` into the shard's own CSV: the
same code path as a shard started by hand, so it resumes whatever the shard's CSV already holds. Preempted or timed
out on Slurm, submitit requeues it (its ``checkpoint``); failed or killed, it is submitted again (``resubmit``).
submitit is imported only in the functions that use it, so the package imports without it.

Slurm states are asked of squeue (queued and running jobs, and finished ones for a few minutes after), then read
from the task's result file (COMPLETED / FAILED), then asked of sacct, which needs Slurm's accounting database:
one call of each for all the jobs, never submitit's state polling (it warns on every failed sacct call).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

from ..errors import AlexRepairError, UsageError
from ..fileio import one_line

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm")
DEFAULT_TIME_MIN = 24 * 60         # a task's time limit unless --slurm-time says otherwise (it is requeued after)
# states of a job that is queued or running (prefixes: REQUEUE covers REQUEUED, REQUEUE_HOLD, REQUEUE_FED)
ACTIVE = ("RUNNING", "PENDING", "REQUEUE", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "SIGNALING",
          "STAGE_OUT", "RESV_DEL_HOLD")
QUERY_TIMEOUT_S = 30               # a squeue or sacct call that takes longer counts as no answer
RESULT_GRACE_S = 15                # how long a job gone from squeue may take to show its result file (shared FS)
SACCT_NOTE = ("finished jobs' states need Slurm accounting (sacct: {why}); shown instead: squeue's state while a "
              "job is queued or running (and a few minutes after), else its result file's (COMPLETED/FAILED), "
              "else UNKNOWN")


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


def job_states(kind: str, folder, job_ids: list[str]) -> tuple[dict[str, str], list[str]]:
    """The scheduler's state of each job and notes on what could not be asked. Slurm: see :func:`slurm_states`.
    Local: COMPLETED / FAILED (its result file), RUNNING (its process lives) or STOPPED (killed without a result)."""
    if kind == "slurm":
        return slurm_states(folder, job_ids)
    local = {str(j): _guard(lambda j=j: result_state(folder, j) or ("RUNNING" if _alive(int(j)) else "STOPPED"), j)
             for j in job_ids}
    return {j: state or "UNKNOWN" for j, state in local.items()}, []


def slurm_states(folder, job_ids: list[str]) -> tuple[dict[str, str], list[str]]:
    """Each Slurm job's state from the first that knows it: squeue, the task's result file, sacct; else UNKNOWN.
    The notes say (once each) which of squeue and sacct could not answer."""
    ids = [str(j) for j in job_ids]
    queued, squeue_why = squeue_states(ids) if ids else ({}, "")
    states = {j: (queued or {}).get(j) or _guard(lambda j=j: result_state(folder, j), j) for j in ids}
    notes = [f"squeue could not be asked ({squeue_why}): states of queued and running jobs are unknown"] \
        if queued is None else []
    missing = [j for j, state in states.items() if not state]
    if missing:
        accounted, sacct_why = sacct_states(missing)
        if accounted is None:
            notes.append(SACCT_NOTE.format(why=sacct_why))
        states.update({j: (accounted or {}).get(j) for j in missing})
    return {j: state or "UNKNOWN" for j, state in states.items()}, notes


def squeue_states(job_ids: list[str]) -> tuple[dict[str, str] | None, str]:
    """squeue's states of the jobs it still knows (every task of an array on its own line, finished ones too), or
    None and why when it cannot answer."""
    out, why = _ask(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T"])
    return (None, why) if out is None else (parse_states(out, " "), "")


def sacct_states(job_ids: list[str]) -> tuple[dict[str, str] | None, str]:
    """sacct's states of the jobs (needs accounting), or None and why when it cannot answer."""
    out, why = _ask(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)])
    return (None, why) if out is None else (parse_states(out, "|"), "")


def parse_states(text: str, sep: str) -> dict[str, str]:
    """Lines 'JOBID<sep>STATE' (squeue -o '%i %T', sacct -P -o JobID,State) -> {job id: state}. A job array's
    tasks shown together ('12_[3-5,7%2]') are spread into '12_3'...; 'CANCELLED by 0' is 'CANCELLED'."""
    states = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition(sep)
        if not job or not state.strip() or "." in job:        # sacct's job steps: 12.batch
            continue
        for one in _spread(job):
            states[one] = state.split()[0]
    return states


def _spread(job: str) -> list[str]:
    """'12_[3-5,7%2]' -> ['12_3', '12_4', '12_5', '12_7']; any other id as it is."""
    match = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job)
    if not match:
        return [job]
    out = []
    for part in match.group(2).split(","):
        low, _, high = part.partition("-")
        out += [f"{match.group(1)}_{i}" for i in range(int(low), int(high or low) + 1)]
    return out


def _ask(command: list[str]) -> tuple[str | None, str]:
    """(stdout, '') of a Slurm command, or (None, why) when it cannot answer. An id it no longer knows is an answer."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"{command[0]}: {one_line(err)}"
    if done.returncode and "Invalid job id" not in done.stderr:
        return None, one_line(ValueError(done.stderr or done.stdout or f"{command[0]} exited with {done.returncode}"))
    return done.stdout, ""


def _result_file(folder, job_id: str) -> Path:
    from submitit.core.utils import JobPaths

    return JobPaths(folder, job_id=str(job_id)).result_pickle


def has_result(folder, job_id: str) -> bool:
    """Whether the task of ``job_id`` has written its submitit result file."""
    return _result_file(folder, job_id).exists()


def result_state(folder, job_id: str) -> str | None:
    """COMPLETED or FAILED from the task's submitit result file; None while there is none."""
    from submitit.core.utils import pickle_load

    path = _result_file(folder, job_id)
    if not path.exists():
        return None
    return "COMPLETED" if pickle_load(path)[0] == "success" else "FAILED"


def _guard(state, job_id: str) -> str | None:
    """``state()``, or None when it fails (submitit missing, a result file half written or junk)."""
    try:
        return state()
    except (ImportError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
        log.debug("state of job %s: %s", job_id, err)
        return None


def wait_slurm(folder, job_ids: list[str], grace_s: float = RESULT_GRACE_S, longest_pause_s: float = 30) -> None:
    """Wait until every job has left Slurm's queue: it has a result file, or squeue shows it finished or lists it no
    more (for ``grace_s``, as a shared file system may show the file late). Asks no sacct, so it works without
    accounting; while squeue cannot answer it waits for the result files (saying so once)."""
    gone_since = {str(j): None for j in job_ids}
    pause, warned = 1.0, False
    while gone_since:
        queued, why = squeue_states(list(gone_since))
        if queued is None and not warned:
            log.warning("squeue could not be asked (%s): waiting for the tasks' result files", why)
            warned = True
        now = time.monotonic()
        for job_id in list(gone_since):
            if has_result(folder, job_id):
                del gone_since[job_id]
            elif queued is None or queued.get(job_id, "").startswith(ACTIVE):
                gone_since[job_id] = None
            elif now - (gone_since[job_id] or now) >= grace_s:
                del gone_since[job_id]
            else:
                gone_since[job_id] = gone_since[job_id] or now
        if gone_since:
            time.sleep(pause)
            pause = min(pause * 1.5, longest_pause_s)


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
