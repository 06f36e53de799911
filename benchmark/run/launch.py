"""Fan a run out over processes: ``--launcher local --jobs N`` (N single-thread processes on this
machine) or ``--launcher slurm`` (a SLURM job array, through submitit).

The submitting process plans the run (prepares the data cache, measures the FLOPs per step,
lists the cells), gives every pretrained model with unfinished cells (a :class:`~benchmark.run.units.Unit`)
to one task, waits for all tasks and returns the records; the leaderboard is then written once,
by the caller. A task is :func:`benchmark.run.runner.run` restricted to its unit, in the submitting
process's working directory and into the same results folder; it claims its unit there
(:mod:`benchmark.run.units`), so a task never repeats work another process is doing or has done.
A SLURM task that hits its time limit is requeued (submitit's checkpointing, up to 3 times) and
resumes pretraining from its last checkpoint.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.config import ConfigError
from benchmark.nn import distributed
from benchmark.run.runner import RunRequest, plan_run, run
from benchmark.run.units import Unit
from benchmark.train.runtime import resolve_device

log = logging.getLogger("benchmark")

LAUNCHERS = ("none", "local", "slurm")
JOBS = "_jobs"  # submitit's pickles and the tasks' logs, under the results folder
_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<hours>\d+):(?P<minutes>\d\d):(?P<seconds>\d\d)$")


class LaunchError(RuntimeError):
    """Some tasks failed; the others' results are saved (``records``: every finished cell of the run)."""

    def __init__(self, message: str, records: list[dict]):
        super().__init__(message)
        self.records = records


def time_limit_minutes(text: str) -> int:
    """A SLURM time limit, ``MINUTES``, ``HH:MM:SS`` or ``D-HH:MM:SS``, in whole minutes (rounded up)."""
    text = text.strip()
    if text.isdigit():
        minutes = int(text)
    elif match := _TIME.match(text):
        seconds = (int(match["days"] or 0) * 24 + int(match["hours"])) * 3600
        seconds += int(match["minutes"]) * 60 + int(match["seconds"])
        minutes = -(-seconds // 60)
    else:
        raise ConfigError(f"--time {text!r}: give minutes (90), HH:MM:SS (24:00:00) or D-HH:MM:SS (2-00:00:00)")
    if minutes < 1:
        raise ConfigError(f"--time {text!r}: the time limit must be at least one minute")
    return minutes


@dataclass
class LaunchConfig:
    """How ``run`` spreads its pretrained models over processes (``--launcher`` and its options)."""

    launcher: str = "none"  # none: this process runs everything itself
    jobs: int = 2  # local: processes at once
    partition: str | None = None  # slurm: the partition (None: the cluster's default)
    gpus_per_task: int = 1  # slurm: GPUs of one task; more than one train it with DDP, one process per GPU
    cpus_per_task: int = 8  # slurm: CPU cores of one task (data loading, evaluation)
    time: str = "24:00:00"  # slurm: time limit of one task (a task past it is requeued and resumes)
    array_parallelism: int = 32  # slurm: tasks of the array running at once
    job_dir: Path | None = None  # submitit's files and task logs (default: OUT/_jobs)
    cluster: str = "slurm"  # submitit's executor; "local" runs the same path on this machine (the tests do)

    def __post_init__(self):
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher {self.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
        for name, least in (("jobs", 1), ("gpus_per_task", 0), ("cpus_per_task", 1), ("array_parallelism", 1)):
            if getattr(self, name) < least:
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option} must be >= {least}, got {getattr(self, name)}")
        self.timeout_min = time_limit_minutes(self.time)

    def executor_parameters(self) -> dict:
        """submitit's parameters for one task of the array."""
        parameters = {
            "name": "ecgbench",
            "timeout_min": self.timeout_min,
            "tasks_per_node": max(1, self.gpus_per_task),
            "gpus_per_node": self.gpus_per_task,
            "cpus_per_task": self.cpus_per_task,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.partition:
            parameters["slurm_partition"] = self.partition
        return parameters


@dataclass
class UnitTask:
    """One task: the run restricted to one unit, in the submitting process's working directory (so
    relative paths mean the same). Under SLURM with several GPUs the task's processes form a DDP
    group. submitit requeues a task that timed out by calling :meth:`checkpoint`."""

    request: RunRequest
    cwd: str
    single_thread: bool = False  # local jobs: one intra-op thread each, so N jobs share the cores

    def __call__(self, unit: Unit) -> int:
        os.chdir(self.cwd)
        logging.basicConfig(
            level=logging.INFO, format=f"[benchmark {unit.describe()}] %(message)s", stream=sys.stderr, force=True
        )
        if self.single_thread:
            from threadpoolctl import threadpool_limits  # scikit-learn's dependency: NumPy's BLAS

            torch.set_num_threads(1)
            threadpool_limits(1)
        if os.environ.get("SUBMITIT_EXECUTOR"):  # a submitit task: its processes (one per GPU) form a DDP group
            import submitit

            if submitit.JobEnvironment().num_tasks > 1:
                submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        with distributed.session(resolve_device(self.request.device)) as device:
            records = run(dataclasses.replace(self.request, units=[unit], device=str(device)))
        return len(records)

    def checkpoint(self, unit: Unit):
        """Requeue the same task after a time-out: pretraining resumes from its last checkpoint and
        finished cells are skipped."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, unit)


def launch(request: RunRequest, config: LaunchConfig) -> list[dict]:
    """Plan the run here, run its units in ``config``'s tasks, wait for all; return the records of
    every finished cell. Raises :class:`LaunchError` naming the failed units (after all tasks end)."""
    if distributed.launched_by_torchrun():
        raise ConfigError("--launcher starts its own processes; do not start it under torchrun")
    if config.launcher == "slurm":
        _check_submitit(config)
    plan = plan_run(dataclasses.replace(request, device="cpu"))  # a login node may have no GPU: tasks pick theirs
    units = plan.mine()
    if units:
        log.info("%d pretrained models with unfinished cells go to %s tasks", len(units), config.launcher)
        task = UnitTask(request, os.getcwd(), single_thread=config.launcher == "local")
        failures = (_run_local if config.launcher == "local" else _run_slurm)(task, units, config, plan.store.root)
        if failures:
            raise LaunchError(
                f"{len(failures)} of {len(units)} tasks failed ({'; '.join(failures)}); the finished cells are "
                f"saved: run the same command again to retry the rest",
                plan.records(),
            )
    return plan.records()


def _run_local(task: UnitTask, units: list[Unit], config: LaunchConfig, out: Path) -> list[str]:
    failures = []
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads inherited
    with concurrent.futures.ProcessPoolExecutor(max_workers=config.jobs, mp_context=spawn) as pool:
        futures = {pool.submit(task, unit): unit for unit in units}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                unit = futures[future]
                error = future.exception()
                if error is None:
                    log.info("[%d/%d pretrained models] %s done", done, len(units), unit.describe())
                else:
                    log.error("%s failed: %s: %s", unit.describe(), type(error).__name__, error)
                    failures.append(f"{unit.describe()}: {type(error).__name__}: {error}")
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return failures


def _check_submitit(config: LaunchConfig) -> None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install 'ecgbench[cluster]'") from None
    if config.cluster == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError(
            "--launcher slurm: sbatch is not on PATH (run it on a SLURM login node); on one machine use "
            "--launcher local --jobs N, on another scheduler --shard I/N"
        )


def _run_slurm(task: UnitTask, units: list[Unit], config: LaunchConfig, out: Path) -> list[str]:
    import submitit

    folder = config.job_dir or out / JOBS
    executor = submitit.AutoExecutor(folder=folder, cluster=config.cluster)
    executor.update_parameters(**config.executor_parameters())
    jobs = executor.map_array(task, units)
    log.info(
        "submitted %d tasks (job %s); logs in %s; the tasks keep running if this process stops",
        len(jobs),
        jobs[0].job_id.split("_")[0],
        folder,
    )
    unit_of = {job.job_id: unit for job, unit in zip(jobs, units)}
    failures = []
    for done, job in enumerate(submitit.helpers.as_completed(jobs, poll_frequency=2), 1):
        unit = unit_of[job.job_id]
        try:
            job.results()  # one result per process of the task
        except Exception as error:  # submitit re-raises the task's error with its traceback text
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            log.error("%s failed (job %s): %s; log: %s", unit.describe(), job.job_id, reason, job.paths.stderr)
            failures.append(f"{unit.describe()}: {reason}; log {job.paths.stderr}")
        else:
            log.info("[%d/%d pretrained models] %s done (job %s)", done, len(units), unit.describe(), job.job_id)
    return failures
