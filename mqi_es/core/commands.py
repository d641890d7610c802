"""Facts to record, as typed commands: what the decision core, the reactions to remote
outcomes, the intake and an operator ask the ledger to record.

Each command names its subject and carries what the event will say, ``reason`` included;
who asks (the actor) is the bus's to add. The bus (``mqi_es.app.bus``) maps each type to
the ledger's method of the same meaning; a command the ledger refuses (the state moved on
meanwhile) is not recorded, and the remote action that depended on it is not started.
Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mqi_es.core.states import AlarmKind, FailureCategory, HostState, KillCause

_command = dataclass(frozen=True, slots=True, kw_only=True)

Digests = list[list[str | int]]  # [relative path, size, SHA-256 hex] per file, by path


# --- hosts and slots -------------------------------------------------------------------


@_command
class RegisterHost:
    name: str
    address: str


@_command
class RegisterSlot:
    host: str
    slot: str


@_command
class RecordHostUnavailable:
    name: str
    state: HostState
    since: datetime
    reason: str


@_command
class RecordHostReachable:
    name: str
    at: datetime
    reason: str = ""


@_command
class MarkSlotBusy:
    host: str
    slot: str
    task_ids: list[int]
    reason: str


@_command
class MarkSlotFree:
    host: str
    slot: str
    reason: str


@_command
class RecordSlotResumed:
    host: str
    slot: str
    reason: str


@_command
class LiftQuarantine:
    host: str
    slot: str
    reason: str


# --- intake ----------------------------------------------------------------------------


@_command
class DetectCase:
    case_id: str
    file_count: int
    total_bytes: int
    fingerprint: str
    hold_reason: str | None = None


@_command
class ClaimNames:
    """Claim the names of cases registered before names were claimed."""

    case_ids: list[str]


@_command
class RefuseEntry:
    name_repr: str
    reason: str


@_command
class HoldCase:
    case_id: str
    reason: str


@_command
class RestabilizeCase:
    case_id: str
    file_count: int
    total_bytes: int
    fingerprint: str
    reason: str


# --- an attempt ------------------------------------------------------------------------


@_command
class StartSubmission:
    case_id: str
    host: str
    slot: str
    remote_base_dir: str


@_command
class RecordUpload:
    case_id: str
    attempt: int
    files: int
    bytes: int
    seconds: float
    digests: Digests
    manifest_sha256: str


@_command
class RecordEnqueued:
    case_id: str
    attempt: int
    task_id: int
    created_at: datetime
    reason: str = ""


@_command
class RecordStarted:
    case_id: str
    attempt: int
    started_at: datetime | None
    node: str | None = None  # where the host ran it, when it says


@_command
class RecordRemoteSuccess:
    case_id: str
    attempt: int
    ended_at: datetime | None
    reason: str = ""  # what the host said of the ending, when it says (Slurm's state)


@_command
class CompleteCase:
    case_id: str
    attempt: int
    files: int
    bytes: int
    results_dir: str
    digests: Digests
    manifest_sha256: str


@_command
class FailCase:
    """End the case; ``quarantine`` keeps its slot out of use (a task that may still run
    on it, known by ``quarantine_task_id``) instead of releasing it."""

    case_id: str
    category: FailureCategory
    reason: str
    exit_code: int | None = None
    log_tail: str = ""
    quarantine_task_id: int | None = None
    quarantine: bool = False


@_command
class AbandonAttempt:
    case_id: str
    not_before: datetime | None
    charged: bool
    reason: str


@_command
class RequestKill:
    case_id: str
    cause: KillCause
    reason: str


# --- an operator's -----------------------------------------------------------------------


@_command
class CancelCase:
    case_id: str
    reason: str


@_command
class RetryCase:
    case_id: str
    reason: str


@_command
class SetCaseTimeout:
    case_id: str
    hours: float | None
    reason: str


# --- alarms ------------------------------------------------------------------------------


@_command
class RaiseAlarm:
    """Open an alarm for the condition ``key`` (never while one for it is not cleared).
    ``about_case`` puts it into that case's history; ``host`` is the host whose sight
    tells whether the condition lasts (None: it is judged every cycle). A condition that
    can only happen once (a name refused) is raised without a time."""

    key: str
    kind: AlarmKind
    subject: str
    message: str
    raised_at: datetime | None
    about_case: str | None = None
    host: str | None = None


@_command
class ClearAlarm:
    alarm_id: str
    reason: str


@_command
class AcknowledgeAlarm:
    alarm_id: str
    reason: str


@_command
class RecordTaskRemoved:
    """Housekeeping removed the ended task of a case attempt from its host's queue."""

    case_id: str
    attempt: int
    task_id: int
    reason: str = "its outcome is recorded"


@_command
class RecordFolderRemoved:
    """Housekeeping removed a case's folder on a node."""

    case_id: str
    host: str
    folder: str
    reason: str = ""


@_command
class RecordProgress:
    """The running attempt of a case reached another tenth of its run."""

    case_id: str
    attempt: int
    done: int
    total: int


@_command
class RecordDelivery:
    """One attempt to deliver a notification: ``detail`` is what the receiver answered, or
    why nothing reached it."""

    notification_id: str
    delivered: bool
    detail: str


Command = (
    RegisterHost | RegisterSlot | RecordHostUnavailable | RecordHostReachable | MarkSlotBusy
    | MarkSlotFree | RecordSlotResumed | LiftQuarantine | DetectCase | ClaimNames | RefuseEntry
    | HoldCase | RestabilizeCase | StartSubmission | RecordUpload | RecordEnqueued | RecordStarted
    | RecordRemoteSuccess | CompleteCase | FailCase | AbandonAttempt | RequestKill | CancelCase
    | RetryCase | SetCaseTimeout | RaiseAlarm | ClearAlarm | AcknowledgeAlarm | RecordDelivery
    | RecordTaskRemoved | RecordFolderRemoved | RecordProgress
)  # fmt: skip


def case_of(command: Command) -> str | None:
    """The case a command is about, if it is about one."""
    return getattr(command, "case_id", None)


def subject_of(command: Command) -> str:
    """Who a command is about, as the log names it: ``case c1``, ``gpu n1/gpu0``, ..."""
    case_id = case_of(command)
    if case_id is not None:
        return f"case {case_id}"
    if isinstance(command, RaiseAlarm):
        return f"alarm {command.key}"
    if isinstance(command, ClearAlarm | AcknowledgeAlarm):
        return f"alarm {command.alarm_id}"
    if isinstance(command, RefuseEntry):
        return f"entry {command.name_repr}"
    if isinstance(command, ClaimNames):
        return f"{len(command.case_ids)} case name(s)"
    slot = getattr(command, "slot", None)
    if slot is not None:
        return f"gpu {command.host}/{slot}"  # type: ignore[union-attr]
    return f"host {command.name}"  # type: ignore[union-attr]
