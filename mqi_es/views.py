"""Read-only rows of the current state, as the projections keep them.

The decision core and the CLI read these; they are rebuilt from the event log at will
and are never a source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mqi_es.states import CaseState, FailureCategory, HostState, KillCause, SlotState


@dataclass(frozen=True, slots=True)
class CaseView:
    case_id: str
    state: CaseState
    arrival: int  # notification id of its detection: the arrival order
    attempt: int
    detected_at: datetime
    updated_at: datetime
    state_since: datetime  # when the case entered its current state (our clock)
    file_count: int
    total_bytes: int
    fingerprint: str
    host: str | None = None
    group: str | None = None
    label: str | None = None
    remote_dir: str | None = None
    task_id: int | None = None
    task_created_at: datetime | None = None
    uploaded: bool = False
    started_at: datetime | None = None
    not_before: datetime | None = None
    timeout_hours: float | None = None
    cancel_requested: bool = False
    kill_cause: KillCause | None = None
    failure: FailureCategory | None = None
    exit_code: int | None = None
    infra_failures: int = 0
    results_dir: str | None = None
    reason: str = ""  # the reason of the last event that gave one


@dataclass(frozen=True, slots=True)
class SlotView:
    host: str
    group: str
    state: SlotState
    updated_at: datetime
    case_id: str | None = None
    attempt: int | None = None
    task_id: int | None = None
    reason: str = ""

    @property
    def key(self) -> str:
        return f"{self.host}/{self.group}"


@dataclass(frozen=True, slots=True)
class HostView:
    name: str
    address: str
    state: HostState
    updated_at: datetime
    unreachable_since: datetime | None = None
    last_outage_seconds: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RefusalView:
    name_repr: str
    reason: str
    refused_at: datetime
