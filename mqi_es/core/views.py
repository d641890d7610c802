"""Read-only rows of the current state, as the projections keep them.

The decision core and the CLI read these; they are rebuilt from the event log at will
and are never a source of truth. They are msgspec Structs rather than frozen dataclasses
because the daemon builds one per active case every cycle, and a Struct is built in C.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from mqi_es.core.notices import Notice
from mqi_es.core.run_progress import RunProgress
from mqi_es.core.states import (
    AlarmKind,
    AlarmState,
    CaseState,
    FailureCategory,
    HostState,
    KillCause,
    SlotState,
)


class CaseView(msgspec.Struct, frozen=True, kw_only=True):
    case_id: str
    state: CaseState
    arrival: int  # notification id of its detection: the arrival order
    attempt: int
    detected_at: datetime
    updated_at: datetime
    state_since: datetime  # when the case entered its current state (its event's time)
    file_count: int
    total_bytes: int
    fingerprint: str
    host: str | None = None
    slot: str | None = None  # the slot of the current attempt, on ``host``
    label: str | None = None
    remote_dir: str | None = None
    task_id: int | None = None
    task_created_at: datetime | None = None
    started_at: datetime | None = None  # the task's start, by the node's clock
    seen_running_at: datetime | None = None  # when we first saw it run, by our clock
    not_before: datetime | None = None
    timeout_hours: float | None = None
    cancel_requested: bool = False
    kill_cause: KillCause | None = None
    failure: FailureCategory | None = None
    exit_code: int | None = None
    infra_failures: int = 0
    results_dir: str | None = None
    reason: str = ""  # the reason of the last event that gave one
    node: str | None = None  # where the current attempt runs, when its host says
    progress: RunProgress | None = None  # of its last attempt, as last recorded
    progress_at: datetime | None = None


class SlotView(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    name: str
    state: SlotState
    updated_at: datetime
    case_id: str | None = None
    attempt: int | None = None
    task_id: int | None = None  # a quarantined slot's task, known by id, label and creation
    task_label: str | None = None
    task_created_at: datetime | None = None
    reason: str = ""

    @property
    def key(self) -> str:
        return f"{self.host}/{self.name}"


class HostView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    address: str
    state: HostState
    updated_at: datetime
    unreachable_since: datetime | None = None
    last_outage_seconds: float | None = None
    reason: str = ""


class RefusalView(msgspec.Struct, frozen=True, kw_only=True):
    name_repr: str
    reason: str
    refused_at: datetime


class AlarmView(msgspec.Struct, frozen=True, kw_only=True):
    alarm_id: str  # the aggregate's id (hex)
    number: int  # what an operator types (`mqi ack N`): the notification id of its raise
    key: str  # the condition: raised again only after this one was cleared
    kind: AlarmKind
    subject: str  # e.g. "case c1", "host n1", "gpu n1/gpu0", "daemon"
    message: str
    state: AlarmState
    raised_at: datetime
    case_id: str | None = None
    host: str | None = None  # the host whose sight tells whether the condition lasts
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    cleared_at: datetime | None = None
    reason: str = ""  # of the last acknowledgement or clearing


class NotificationView(msgspec.Struct, frozen=True, kw_only=True):
    notification_id: str  # the aggregate's id (hex)
    number: int  # the notification id of its Due event
    channel: str  # "webhook", "email"
    notice: Notice
    delivered: bool
    attempts: int
    last_attempt_at: datetime | None = None
    last_detail: str = ""  # what the receiver answered at the last attempt, or why not
    delivered_at: datetime | None = None


class Leftover(msgspec.Struct, frozen=True, kw_only=True):
    """A folder an ended case left on a node."""

    case_id: str
    host: str
    folder: str  # as recorded: the parent of the case's attempt folders
    ended_at: datetime
    failed: bool
