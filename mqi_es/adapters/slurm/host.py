"""A Slurm cluster through its login node: ``mqi_es.app.ports.RemoteHost`` over SSH.

A slot stands for one job of ours, queued or running; Slurm chooses the node and the GPU
(``CUDA_VISIBLE_DEVICES`` is Slurm's, ``{gpu_index}`` is empty). One poll is one round trip
(``squeue --me -t all``: ended jobs too, while the controller remembers them); a job of
ours that was seen and has left the queue is looked up in the accounting (``sacct``) in
the same poll, when there is accounting. "Not in the queue" is never "done": a job that
neither tells is missing, and the core loses it only after its grace.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.slurm.commands import (
    build_cancel,
    build_forget,
    build_observe,
    build_sacct,
    build_submit,
    build_tails,
)
from mqi_es.adapters.slurm.parse import (
    SlurmOutputError,
    parse_observe,
    parse_sacct,
    parse_submit,
    parse_tails,
    to_task,
)
from mqi_es.adapters.ssh.case_host import SshCaseHost
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.target import ssh_target
from mqi_es.config.schema import HostConfig, SlurmConfig
from mqi_es.core.outcome import Ok, RemoteFailure, Unknown, summary
from mqi_es.core.reactions import Removed
from mqi_es.core.remote import (
    Blindness,
    LogTails,
    Observation,
    RemoteSlot,
    RemoteTask,
    Seen,
    StatusSnapshot,
    Unseen,
)
from mqi_es.core.task_command import RemoteCommandTemplate, TaskEnvironment

log = logging.getLogger(__name__)

KILL_MARGIN_MINUTES = 15  # Slurm's own limit comes this long after ours: our kill comes first


def slurm_slots(settings: SlurmConfig) -> tuple[str, ...]:
    return tuple(f"slot{i}" for i in range(settings.slots))


class SlurmHost(SshCaseHost):
    """One cluster of ``host`` (``backend: slurm``) over ``connection``.

    :param timeout_hours: the running time our own kill allows (Slurm's ``--time`` is this
        plus a margin, unless ``slurm.time_limit_minutes`` sets it)
    """

    def __init__(
        self,
        host: HostConfig,
        connection: HostConnection,
        *,
        results_globs: tuple[str, ...],
        timeout_hours: float,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(host, connection, results_globs=results_globs)
        assert host.slurm is not None
        self.settings = host.slurm
        self.slots = slurm_slots(host.slurm)
        self._template = RemoteCommandTemplate(host.remote_command)
        self._task_env = TaskEnvironment(host.task_env, host.task_env_from_node)
        self._time_limit = host.slurm.time_limit_minutes or (
            math.ceil(timeout_hours * 60) + KILL_MARGIN_MINUTES
        )
        self._observe_command = build_observe(host.remote_base_dir)
        self._clock, self._monotonic = clock, monotonic
        self._seen: dict[int, RemoteTask] = {}  # jobs of ours seen unended in the queue

    @classmethod
    def from_config(
        cls, host: HostConfig, *, results_globs: tuple[str, ...], timeout_hours: float
    ) -> SlurmHost:
        return cls(host, HostConnection(ssh_target(host)), results_globs=results_globs,
                   timeout_hours=timeout_hours)  # fmt: skip

    async def observe(self) -> Observation:
        sent_at, taken_at = self._clock(), self._monotonic()
        outcome = await self.connection.run(self._observe_command)
        rtt = self._monotonic() - taken_at
        match outcome:
            case Ok(stdout=stdout):
                try:
                    reading = parse_observe(stdout)
                except SlurmOutputError as exc:
                    return Unseen(str(exc), Blindness.UNREADABLE)
            case RemoteFailure():
                return Unseen(f"`squeue` failed: {summary(outcome)}", Blindness.QUEUE_DOWN)
            case Unknown(reason=reason):
                return Unseen(reason, Blindness.UNREACHABLE)
        tasks = {}
        for job in reading.jobs.values():
            task = to_task(job, refused_rerun=job.job_id in reading.refused)
            # An ended job whose output file is gone was removed by housekeeping: it is
            # forgotten here even while Slurm still lists it.
            if task is None or (task.state == "ended" and job.job_id not in reading.logs):
                continue
            tasks[task.id] = task
        gone = [i for i in self._seen if i not in reading.jobs]
        if gone and self.settings.accounting != "none":
            tasks.update(await self._accounted(gone))
        self._seen = {i: t for i, t in tasks.items() if t.state != "ended"}
        node_time = reading.node_time
        midpoint = sent_at + timedelta(seconds=rtt / 2)
        skew = None if node_time is None else (node_time - midpoint).total_seconds()
        slots = {slot: RemoteSlot(open=True) for slot in self.slots}
        return Seen(StatusSnapshot(tasks, slots), taken_at, node_time, skew, rtt, "slurm")

    async def _accounted(self, job_ids: Sequence[int]) -> dict[int, RemoteTask]:
        """What accounting says of jobs the queue forgot, as they were seen (their slot and
        submission time are the queue's); nothing if it cannot say (the jobs are then
        missing: the core's grace decides)."""
        auto = self.settings.accounting == "auto"
        outcome = await self.connection.run(build_sacct(job_ids, completion_log=auto))
        if not isinstance(outcome, Ok):
            log.info("%s: sacct could not tell (%s)", self.name, outcome)
            return {}
        try:
            found = parse_sacct(outcome.stdout)
        except SlurmOutputError as exc:
            log.info("%s: %s", self.name, exc)
            return {}
        told = {}
        for job_id, job in found.items():
            seen, task = self._seen.get(job_id), to_task(job)
            if seen is not None and task is not None and task.label == seen.label:
                told[job_id] = dataclasses.replace(task, slot=seen.slot,
                                                   created_at=seen.created_at)  # fmt: skip
        return told

    async def submit(
        self, *, slot: str, label: str, remote_dir: str, case_id: str, attempt: int
    ) -> Ok | RemoteFailure | Unknown:
        values = {"case_id": case_id, "attempt": attempt, "slot": slot, "gpu_index": "",
                  "label": label}  # fmt: skip
        command = build_submit(
            label=label, slot=slot, remote_dir=remote_dir,
            remote_base_dir=self._host.remote_base_dir,
            task_command=self._template.render(case_dir=remote_dir, **values),
            partition=self.settings.partition, gres=self.settings.gres,
            time_limit_minutes=self._time_limit, options=self.settings.sbatch_options,
            env=self._task_env.render(**values),
        )  # fmt: skip
        outcome = await self.connection.run(command)
        if isinstance(outcome, Ok):
            try:
                outcome = Ok(str(parse_submit(outcome.stdout)))
            except SlurmOutputError as exc:
                outcome = Unknown(str(exc))  # the job may exist: the next poll finds it by name
        log.debug("%s: sbatch %s: %s", self.name, label, type(outcome).__name__)
        return outcome

    async def cancel(self, task: RemoteTask) -> Ok | RemoteFailure | Unknown:
        return await self.connection.run(build_cancel(task.id))

    async def release(self, slot: str) -> Ok | RemoteFailure | Unknown:
        return Ok("")  # Slurm holds nothing of ours in a slot: there is nothing to release

    async def remove_tasks(self, tasks: Sequence[RemoteTask]) -> Removed | RemoteFailure | Unknown:
        """Remove what is left of ended jobs here: their output files."""
        ids = [t.id for t in tasks]
        outcome = await self.connection.run(build_forget(self._host.remote_base_dir, ids))
        return Removed(tuple(ids)) if isinstance(outcome, Ok) else outcome

    async def log_tails(
        self, tasks: Sequence[RemoteTask], *, lines: int
    ) -> LogTails | RemoteFailure | Unknown:
        command = build_tails(self._host.remote_base_dir, [t.id for t in tasks], lines)
        outcome = await self.connection.run(command)
        if not isinstance(outcome, Ok):
            return outcome
        return LogTails(parse_tails(outcome.stdout))

    async def check(self) -> list:  # type: ignore[type-arg]
        from mqi_es.adapters.slurm.checks import cluster_findings

        return await cluster_findings(self)
