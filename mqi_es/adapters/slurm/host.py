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
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.slurm.checks import cluster_findings
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
    SlurmReading,
    parse_observe,
    parse_sacct,
    parse_submit,
    parse_tails,
    to_task,
)
from mqi_es.adapters.ssh.case_host import SshCaseHost
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.node_clock import skew
from mqi_es.adapters.ssh.target import ssh_target
from mqi_es.config.schema import HostConfig, SlurmConfig
from mqi_es.core.checks import Finding
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
ASK_LIMIT = 30  # polls that ask accounting of a job that left the queue, before giving up
SACCT_BATCH = 500  # job ids per sacct: a command line well under any limit
# sbatch's answers that say no job was made (anything else may have made one: unknown).
_REFUSALS = ("Invalid partition", "Invalid generic resource", "Invalid account",
             "Invalid qos", "Requested node configuration is not available",
             "Requested time limit is invalid", "violates accounting/QOS policy",
             "unrecognized option", "invalid option", "DOS line breaks")  # fmt: skip


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
        self.time_limit = host.slurm.time_limit_minutes or (
            math.ceil(timeout_hours * 60) + KILL_MARGIN_MINUTES
        )
        self._observe_command = build_observe(host.remote_base_dir)
        self._clock, self._monotonic = clock, monotonic
        self._seen: dict[int, RemoteTask] = {}  # jobs of ours seen unended in the queue
        self._told: dict[int, RemoteTask] = {}  # ended jobs accounting told of, gone from it
        self._asked: dict[int, int] = {}  # how often accounting was asked of a job in vain

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
            # An ended job housekeeping removed is forgotten here, though Slurm lists it.
            if task is None or (task.state == "ended" and job.job_id in reading.forgotten):
                continue
            tasks[task.id] = task
        tasks.update(await self._unlisted(reading))
        self._seen = {i: t for i, t in tasks.items() if t.state != "ended"} | {
            i: t for i, t in self._seen.items() if i not in tasks and i in self._asked
        }  # still asked of: not told yet
        slots = {slot: RemoteSlot(open=True) for slot in self.slots}
        offset = skew(reading.node_time, sent_at, rtt)
        return Seen(StatusSnapshot(tasks, slots), taken_at, reading.node_time, offset, rtt, "slurm")

    async def _unlisted(self, reading: SlurmReading) -> dict[int, RemoteTask]:
        """Jobs of ours the queue no longer lists (after MinJobAge), whose outcome may not be
        recorded yet: those seen before, and those whose output is still here (after a
        restart of the daemon, it knows them only so). Accounting tells how they ended,
        once; a job it cannot tell of is asked again for a while, then left missing (the
        core's grace decides). Never "done" or "failed" on a guess."""
        unlisted = ((set(self._seen) | reading.logs) - set(reading.jobs)) - reading.forgotten
        self._told = {i: t for i, t in self._told.items() if i in unlisted}
        self._asked = {i: n for i, n in self._asked.items() if i in unlisted}
        ask = sorted(i for i in unlisted - set(self._told) if self._asked.get(i, 0) < ASK_LIMIT)
        if ask and self.settings.accounting != "none":
            told = await self._accounted(ask, reading.refused)
            self._told.update(told)
            for job_id in ask:
                if job_id not in told:
                    self._asked[job_id] = self._asked.get(job_id, 0) + 1
        return dict(self._told)

    async def _accounted(
        self, job_ids: Sequence[int], refused: frozenset[int]
    ) -> dict[int, RemoteTask]:
        """What accounting says of these jobs, as the queue showed them (their slot and
        submission time are the queue's); nothing of those it cannot tell of."""
        auto = self.settings.accounting == "auto"
        told: dict[int, RemoteTask] = {}
        for start in range(0, len(job_ids), SACCT_BATCH):
            batch = job_ids[start : start + SACCT_BATCH]
            told.update(await self._sacct(batch, refused, completion_log=auto))
        return told

    async def _sacct(
        self, job_ids: Sequence[int], refused: frozenset[int], *, completion_log: bool
    ) -> dict[int, RemoteTask]:
        outcome = await self.connection.run(build_sacct(job_ids, completion_log=completion_log))
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
            task = to_task(job, refused_rerun=job_id in refused)
            if task is None or job_id not in job_ids or task.state != "ended":
                continue  # not ours, or not ended yet as accounting sees it (it lags)
            seen = self._seen.get(job_id)
            if seen is None:
                told[job_id] = task  # known by its output only: as accounting tells it
            elif task.label == seen.label:
                told[job_id] = dataclasses.replace(task, slot=seen.slot,
                                                   created_at=seen.created_at)  # fmt: skip
        return told

    async def submit(
        self, *, slot: str, label: str, remote_dir: str, case_id: str, attempt: int,
        timeout_hours: float | None = None,
    ) -> Ok | RemoteFailure | Unknown:  # fmt: skip
        """``sbatch`` of the case's task; its ``--time`` lets our own kill come first, also
        for a case given a longer limit of its own."""
        limit = self.time_limit
        if timeout_hours is not None:
            limit = max(limit, math.ceil(timeout_hours * 60) + KILL_MARGIN_MINUTES)
        values = {"case_id": case_id, "attempt": attempt, "slot": slot, "gpu_index": "",
                  "label": label}  # fmt: skip
        command = build_submit(
            label=label, slot=slot, remote_dir=remote_dir,
            remote_base_dir=self.host_config.remote_base_dir,
            task_command=self._template.render(case_dir=remote_dir, **values),
            partition=self.settings.partition, gres=self.settings.gres,
            time_limit_minutes=limit, options=self.settings.sbatch_options,
            env=self._task_env.render(**values),
        )  # fmt: skip
        outcome = await self.connection.run(command)
        if isinstance(outcome, Ok):
            try:
                outcome = Ok(str(parse_submit(outcome.stdout)))
            except SlurmOutputError as exc:
                outcome = Unknown(str(exc))  # the job may exist: the next poll finds it by name
        elif isinstance(outcome, RemoteFailure) and not any(
            refusal in outcome.stderr for refusal in _REFUSALS
        ):
            # e.g. "Socket timed out on send/recv operation": the controller may have taken
            # the job; the next polls find it by its name, or, once settled, know it is not.
            outcome = Unknown(f"sbatch failed without saying no: {summary(outcome)}")
        log.debug("%s: sbatch %s: %s", self.name, label, type(outcome).__name__)
        return outcome

    async def cancel(self, task: RemoteTask) -> Ok | RemoteFailure | Unknown:
        return await self.connection.run(build_cancel(task.id))

    async def release(self, slot: str) -> Ok | RemoteFailure | Unknown:
        return Ok("")  # Slurm holds nothing of ours in a slot: there is nothing to release

    async def remove_tasks(self, tasks: Sequence[RemoteTask]) -> Removed | RemoteFailure | Unknown:
        """Remove what is left of ended jobs here: their output files."""
        ids = [t.id for t in tasks]
        outcome = await self.connection.run(build_forget(self.host_config.remote_base_dir, ids))
        return Removed(tuple(ids)) if isinstance(outcome, Ok) else outcome

    async def log_tails(
        self, tasks: Sequence[RemoteTask], *, lines: int
    ) -> LogTails | RemoteFailure | Unknown:
        mark = f"=== mqi {secrets.token_hex(8)}"
        command = build_tails(self.host_config.remote_base_dir, [t.id for t in tasks], lines, mark)
        outcome = await self.connection.run(command)
        if not isinstance(outcome, Ok):
            return outcome
        return LogTails(parse_tails(outcome.stdout, mark))

    async def check(self) -> list[Finding]:
        return await cluster_findings(self)
