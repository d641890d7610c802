"""What the decision core asks the shell to do.

A ``Decision`` holds facts to record now (typed commands, ``mqi_es.core.commands``) and
remote work to carry out asynchronously (the actions here); their outcomes come back to
the core through ``mqi_es.core.reactions``, which turns them into more commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mqi_es.core.commands import Command
from mqi_es.core.remote import RemoteTask
from mqi_es.core.run_progress import RunProgress
from mqi_es.core.states import FailureCategory


@dataclass(frozen=True, slots=True)
class Submit:
    """Start the case's next attempt on this slot: record it, upload, submit its task."""

    case_id: str
    host: str
    slot: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop a remote task (the host kills it if it started, removes it if it waits)."""

    host: str
    task: RemoteTask
    case_id: str | None  # None for a task that holds a quarantined slot


@dataclass(frozen=True, slots=True)
class Release:
    """Let the host start the work it holds in a slot (e.g. a queue it paused)."""

    host: str
    slot: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """Download the results of a case whose task succeeded."""

    case_id: str
    attempt: int
    host: str
    remote_dir: str


@dataclass(frozen=True, slots=True)
class FailWithLog:
    """Read the tail of a failed task's log, then record the case as failed with it."""

    case_id: str
    attempt: int
    host: str
    task: RemoteTask
    reason: str
    category: FailureCategory = FailureCategory.CASE_FAILURE


@dataclass(frozen=True, slots=True)
class RemoveTasks:
    """Housekeeping: remove ended tasks of ours whose outcomes are recorded from the host's
    queue (its status, read every poll, then stays small)."""

    host: str
    tasks: tuple[RemoteTask, ...]


@dataclass(frozen=True, slots=True)
class RemoveFolder:
    """Housekeeping: remove an ended case's folder on a node, its retention over."""

    case_id: str
    host: str
    folder: str


@dataclass(frozen=True, slots=True)
class RunOf:
    """A running attempt whose progress is read: its task, and its progress as recorded."""

    case_id: str
    attempt: int
    task: RemoteTask
    recorded: RunProgress | None


@dataclass(frozen=True, slots=True)
class ReadProgress:
    """Read how far the host's running tasks of ours got (the tails of their output, one
    remote command for all of them)."""

    host: str
    runs: tuple[RunOf, ...]


Action = Submit | Cancel | Release | Fetch | FailWithLog | RemoveTasks | RemoveFolder | ReadProgress


@dataclass(frozen=True, slots=True)
class Memory:
    """What the core remembers between cycles that is not worth an event.

    Times here are on the daemon's monotonic clock (seconds), never the wall clock.

    ``missing``: consecutive good snapshots without a case attempt's task.
    ``kill_sent``: when a kill was last sent, per case attempt (or per quarantined slot).
    ``killing_since``: when this process first saw a case attempt's kill pending.
    ``running_since``: when a case attempt's task started, the node's start time carried
    over once onto our clock (so later jumps of either clock cannot change it).
    ``node_clocks``: per host, the node's clock minus our monotonic clock, and its
    uncertainty (half the round trip), as last measured.
    ``clock``: the wall and monotonic clocks at the last cycle (a jump shows between them).
    ``progress_read``: per host, when the progress of its running tasks was last asked for.
    Losing it (a restart) only makes the core more patient, never wrong.
    """

    missing: dict[tuple[str, int], int] = field(default_factory=dict)
    kill_sent: dict[str, float] = field(default_factory=dict)
    killing_since: dict[tuple[str, int], float] = field(default_factory=dict)
    running_since: dict[tuple[str, int], float] = field(default_factory=dict)
    node_clocks: dict[str, tuple[float, float]] = field(default_factory=dict)
    clock: tuple[datetime, float] | None = None
    progress_read: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    records: tuple[Command, ...]
    actions: tuple[Action, ...]
    memory: Memory
