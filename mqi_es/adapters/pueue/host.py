"""``RemoteHost`` for a GPU node that runs pueue, reached over one persistent SSH connection.

Glue only: ``commands`` builds what is sent and ``parse`` reads the answers, ``ssh`` runs
them and moves the files. This module translates what they return into the port's terms,
and nothing the node or the network does makes it raise:

    the answer                                 observe()               other methods
    exit 0, output read                        Seen                    Ok / Uploaded / ...
    exit 0, pueue older than 3.0               Unseen(incompatible)    add: Unknown
    exit 0, output we cannot read              Unseen(unreadable)      Unknown
    pueue daemon down, pueue failing           Unseen(queue_down)      Unknown / RemoteFailure
    unreachable, timed out, connection lost    Unseen(unreachable)     Unknown

A status we could not read is never a failed task: ``Unseen`` and ``Unknown`` leave every
case where it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.pueue.checks import groups_finding, status_finding, version_finding
from mqi_es.adapters.pueue.commands import (
    DAEMON_DOWN_REASON,
    build_add,
    build_kill,
    build_log,
    build_observe,
    build_remove,
    build_start_group,
    classify,
    gpu_index,
    is_daemon_down,
)
from mqi_es.adapters.pueue.model import PueueState, to_snapshot
from mqi_es.adapters.pueue.parse import (
    MIN_VERSION,
    PueueOutputError,
    StatusReading,
    parse_add_output,
    parse_log,
    parse_removed,
    parse_status_reading,
)
from mqi_es.adapters.ssh.case_host import SshCaseHost
from mqi_es.adapters.ssh.checks import remote_folder_finding, ssh_finding
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.node_clock import skew
from mqi_es.adapters.ssh.target import ssh_target
from mqi_es.config.schema import HostConfig
from mqi_es.core.checks import Finding, Verdict, clock_finding, skipped
from mqi_es.core.outcome import Ok, Outcome, RemoteFailure, Unknown, summary
from mqi_es.core.reactions import (
    Removed,
)
from mqi_es.core.remote import (
    STARTED,
    Blindness,
    LogTails,
    Observation,
    RemoteTask,
    Seen,
    Unseen,
)
from mqi_es.core.task_command import (
    RemoteCommandTemplate,
    TaskEnvironment,
)

__all__ = ["PueueHost"]

log = logging.getLogger(__name__)

REMOVE_BATCH = 500  # ids per `pueue remove`: a command line well under any limit


class PueueHost(SshCaseHost):
    """One GPU node: pueue over ``connection``, implementing ``mqi_es.app.ports.RemoteHost``.

    :param host: the node's configuration (name, pueue executable, task command template,
        parallel transfers)
    :param connection: the node's SSH connection; closed by `close()`
    :param results_globs: which files of a case folder are results (``results.globs``)
    :param clock: the wall clock, to measure the node's skew
    :param monotonic: the monotonic clock, for ``Seen.taken_at`` and the round trip
    :raises ConfigError: ``host.remote_command`` or ``host.pueue`` cannot be used
    """

    def __init__(
        self,
        host: HostConfig,
        connection: HostConnection,
        *,
        results_globs: tuple[str, ...],
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(host, connection, results_globs=results_globs)
        self._pueue = host.pueue
        self._template = RemoteCommandTemplate(host.remote_command)
        self._task_env = TaskEnvironment(host.task_env, host.task_env_from_node)
        self._clock = clock
        self._monotonic = monotonic
        # Built once, so that a bad setting fails at start-up rather than at every poll.
        self._observe_command = build_observe(pueue=host.pueue)
        self._unusable: str | None = None  # why the last poll found pueue unusable
        self.last_state: PueueState | None = None  # pueue's own view at the last poll

    @classmethod
    def from_config(
        cls,
        host: HostConfig,
        *,
        results_globs: tuple[str, ...],
        clock: Callable[[], datetime] = utcnow,
    ) -> PueueHost:
        """The node of ``host`` with a connection of its own (opened by the first call)."""
        connection = HostConnection(ssh_target(host))
        return cls(host, connection, results_globs=results_globs, clock=clock)

    async def observe(self) -> Observation:
        """One round trip (the node's clock, ``pueue --version``, ``pueue status --json``):
        ``Seen(snapshot, taken_at, node_time, skew, rtt)`` or ``Unseen(reason, kind)``.

        ``taken_at`` is read before the query is sent, so every task added before that
        moment is in the snapshot.
        """
        sent_at, taken_at = self._clock(), self._monotonic()
        outcome = await self.connection.run(self._observe_command)
        rtt = self._monotonic() - taken_at
        observation: Observation
        match outcome:
            case Ok(stdout=stdout):
                try:
                    reading = parse_status_reading(stdout)
                except PueueOutputError as exc:
                    observation = Unseen(str(exc), Blindness.UNREADABLE)
                else:
                    observation = self._seen(reading, taken_at, sent_at, rtt)
            case RemoteFailure(stderr=stderr) if is_daemon_down(stderr):
                observation = Unseen(DAEMON_DOWN_REASON, Blindness.QUEUE_DOWN)
            case RemoteFailure():
                observation = Unseen(
                    f"`pueue status` failed: {summary(outcome)}", Blindness.QUEUE_DOWN
                )
            case Unknown(reason=reason):
                observation = Unseen(reason, Blindness.UNREACHABLE)
        log.debug("%s: observe: %s", self.name, type(observation).__name__)
        return observation

    def _seen(
        self, reading: StatusReading, taken_at: float, sent_at: datetime, rtt: float
    ) -> Observation:
        """A poll's reading, unless pueue is too old to tell its tasks apart."""
        self.last_state = reading.state
        old = reading.version < MIN_VERSION or any(
            task.created_at is None for task in reading.state.tasks.values()
        )
        if old:
            shown = ".".join(map(str, reading.version))
            self._unusable = (
                f"its pueue {shown} is older than 3.0: tasks carry no creation time, and ids "
                "are reused, so a task could be taken for another; install pueue 4 there"
            )
            return Unseen(self._unusable, Blindness.INCOMPATIBLE)
        self._unusable = None
        node_time = reading.node_time
        offset = skew(node_time, sent_at, rtt)
        software = "pueue " + ".".join(map(str, reading.version))
        return Seen(to_snapshot(reading.state), taken_at, node_time, offset, rtt, software)

    async def submit(
        self, *, slot: str, label: str, remote_dir: str, case_id: str, attempt: int,
        timeout_hours: float | None = None,
    ) -> Ok | RemoteFailure | Unknown:  # fmt: skip
        """``pueue add`` of the case's task command; ``Ok.stdout`` is the new task's id.

        Output that is not a task id is ``Unknown``: the task may exist, and the next
        snapshot finds it by its label. Nothing is sent to a node whose last poll found its
        pueue unusable.
        """
        if self._unusable is not None:
            return Unknown(f"{self.name} cannot be used: {self._unusable}")
        values = {
            "case_id": case_id, "attempt": attempt, "slot": slot,
            "gpu_index": gpu_index(slot), "label": label,
        }  # fmt: skip
        command = build_add(
            group=slot,  # a slot is a pueue group
            label=label,
            working_dir=remote_dir,
            task_command=self._template.render(case_dir=remote_dir, **values),
            pueue=self._pueue,
            env=self._task_env.render(**values),
            env_from_node=self._task_env.from_node,
        )
        outcome = await self._pueue_command(command)
        if isinstance(outcome, Ok):
            try:
                outcome = Ok(str(parse_add_output(outcome.stdout)))
            except PueueOutputError as exc:
                outcome = Unknown(str(exc))
        log.debug("%s: add to %s: %s", self.name, slot, type(outcome).__name__)
        return outcome

    async def cancel(self, task: RemoteTask) -> Ok | RemoteFailure | Unknown:
        """``pueue kill`` a task that started, ``pueue remove`` one that still waits
        (pueue refuses to remove a running task, and kills asynchronously: a later
        snapshot confirms it)."""
        if task.state in STARTED:
            command = build_kill(task.id, pueue=self._pueue)
        else:
            command = build_remove(task.id, pueue=self._pueue)
        outcome = await self._pueue_command(command)
        log.debug("%s: cancel task %d: %s", self.name, task.id, type(outcome).__name__)
        return outcome

    async def remove_tasks(self, tasks: Sequence[RemoteTask]) -> Removed | RemoteFailure | Unknown:
        """``pueue remove`` ended tasks, in batches (a command line has its limits)."""
        removed: list[int] = []
        for start in range(0, len(tasks), REMOVE_BATCH):
            batch = [t.id for t in tasks[start : start + REMOVE_BATCH]]
            outcome = await self._pueue_command(build_remove(*batch, pueue=self._pueue))
            if isinstance(outcome, Ok):
                try:
                    removed += parse_removed(outcome.stdout)
                except PueueOutputError as exc:
                    outcome = Unknown(str(exc))
            if not isinstance(outcome, Ok):
                if removed:
                    break  # record those that went; the rest are asked for again
                return outcome
        log.debug("%s: removed %d ended task(s)", self.name, len(removed))
        return Removed(tuple(removed))

    async def release(self, slot: str) -> Ok | RemoteFailure | Unknown:
        """``pueue start --group G``: a group pueue paused (after a restart) runs again."""
        outcome = await self._pueue_command(build_start_group(slot, pueue=self._pueue))
        log.debug("%s: start group %s: %s", self.name, slot, type(outcome).__name__)
        return outcome

    async def log_tails(
        self, tasks: Sequence[RemoteTask], *, lines: int
    ) -> LogTails | RemoteFailure | Unknown:
        """The last ``lines`` of each task's output, in one ``pueue log --json`` for all."""
        labels = {task.id: task.label for task in tasks}
        command = build_log(*labels, lines=lines, pueue=self._pueue)
        outcome = await self._pueue_command(command)
        if not isinstance(outcome, Ok):
            log.debug("%s: logs of %d task(s): %s", self.name, len(labels), outcome)
            return outcome
        try:
            entries = parse_log(outcome.stdout)
        except PueueOutputError as exc:
            return Unknown(str(exc))
        return LogTails(
            {i: e.output for i, e in entries.items() if i in labels and e.task.label == labels[i]}
        )

    async def check(self) -> list[Finding]:
        """Every check `mqi doctor` makes of this node, over one SSH connection, as the
        daemon reaches it: SSH, pueue's version, its status, the groups, the remote base
        folder, the clock."""
        reached = await ssh_finding(self.host_config, self.connection)
        if reached.verdict is Verdict.FAIL:
            later = ("pueue version", "pueue status", "groups", "remote folder", "clock")
            return [reached, *skipped(self.name, later, "needs SSH")]
        version = await version_finding(self.host_config, self.connection)
        observation = await self.observe()
        state = self.last_state if isinstance(observation, Seen) else None
        return [
            reached,
            version,
            status_finding(self.host_config, observation),
            groups_finding(self.host_config, state),
            await remote_folder_finding(self.host_config, self.connection),
            clock_finding(self.name, observation, needs="`pueue status`"),
        ]

    async def _pueue_command(self, command: str) -> Outcome:
        return classify(await self.connection.run(command))
