"""What the decision core asks the shell to do.

``Record`` is a fact to save now through the Ledger (its method name and arguments).
The others are remote work, carried out asynchronously; their outcomes come back to the
core through ``mqi_es.reactions``, which turns them into more records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mqi_es.states import FailureCategory


@dataclass(frozen=True, slots=True)
class Record:
    """Call ``Ledger.<command>(**args, actor=...)``."""

    command: str
    args: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, command: str, **args: Any) -> Record:
        return cls(command, tuple(sorted(args.items())))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.args)

    @property
    def case_id(self) -> str | None:
        return self.kwargs.get("case_id")


@dataclass(frozen=True, slots=True)
class Submit:
    """Start the case's next attempt on this slot: record it, upload, `pueue add`."""

    case_id: str
    host: str
    group: str


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop a remote task: kill it if it runs, remove it if it still waits."""

    host: str
    task_id: int
    running: bool
    case_id: str | None  # None for a task that holds a quarantined slot


@dataclass(frozen=True, slots=True)
class ResumeGroup:
    """Start a paused remote group again (`pueue start -g`)."""

    host: str
    group: str


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
    task_id: int
    exit_code: int | None
    reason: str
    category: FailureCategory = FailureCategory.CASE_FAILURE


@dataclass(frozen=True, slots=True)
class Alarm:
    """Something an operator must look at: logged at ERROR."""

    message: str
    case_id: str | None = None


Action = Submit | Kill | ResumeGroup | Fetch | FailWithLog


@dataclass(frozen=True, slots=True)
class Memory:
    """What the core remembers between cycles that is not worth an event.

    ``missing``: consecutive good snapshots without a case attempt's task.
    ``kill_sent``: when a kill was last sent, per case attempt (or per quarantined slot).
    Losing it (a restart) only makes the core more patient, never wrong.
    """

    missing: dict[tuple[str, int], int] = field(default_factory=dict)
    kill_sent: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    records: tuple[Record, ...]
    actions: tuple[Action, ...]
    alarms: tuple[Alarm, ...]
    memory: Memory
