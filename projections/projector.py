"""How each event changes the views: a fold over rows held in memory for one batch.

Rows hold stored values (text for states, integers for flags) except times, which stay
datetimes until the row is written (see ``ViewStore``). The rows of a batch are loaded
from the views file on first use, changed here, and
written back with the batch's tracking position in one transaction by ``ViewStore``.
Keeping the fold free of SQL keeps it fast (replay) and easy to read next to the
aggregates it mirrors; the property tests check both agree.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable
from typing import Any

from mqi_es.core.states import AlarmState, CaseState, FailureCategory, HostState, SlotState
from mqi_es.domain import Alarm, Case, CaseName, EventLog, Host, Notification, Refusal, Slot
from mqi_es.domain.case_cleanup import CaseCleanup

Row = dict[str, Any]
Fields = dict[str, Any]  # an event's fields, as stored (see MsgspecMapper.state_from)
Loader = Callable[[str, str], Row | None]
HostCases = Callable[[str], Iterable[str]]


class Batch:
    """Rows touched by one batch of events, keyed by table and aggregate id (hex)."""

    def __init__(self, load: Loader, cases_on_host: HostCases) -> None:
        self._load = load
        self._cases_on_host = cases_on_host
        self.rows: dict[str, dict[str, Row]] = {table: {} for table in _TABLE_OF.values()}
        self.links: list[tuple[str, int]] = []

    def row(self, table: str, key: str) -> Row:
        rows = self.rows[table]
        row = rows.get(key)
        if row is None:
            row = self._load(table, key)
            if row is None:
                raise LookupError(f"no {table} row for aggregate {key}: events out of order?")
            rows[key] = row
        return row

    def active_cases_on(self, host: str) -> set[str]:
        """Case aggregate ids whose current attempt runs on ``host``."""
        cases = self.rows["cases"]
        found = {key for key in self._cases_on_host(host) if key not in cases}
        found.update(key for key, row in cases.items() if row["host"] == host)
        return found

    def apply(self, key: str, cls: type, event: Fields, notification_id: int) -> None:
        """Fold one event (its class and fields) of the aggregate ``key`` into its row."""
        try:
            fn, table, creates = _HANDLERS[cls]
        except KeyError:
            raise LookupError(f"the views do not know event {cls.__qualname__}") from None
        if creates:
            row = self.rows[table][key] = {"aggregate_id": key}
        else:
            row = self.row(table, key)
        fn(self, row, event, notification_id)
        if table == "cases":  # `mqi history` finds a case's own events by these links too
            self.links.append((row["case_id"], notification_id))


Handler = Callable[[Batch, Row, Fields, int], None]
_HANDLERS: dict[type, tuple[Handler, str, bool]] = {}
_TABLE_OF = {
    "Case": "cases", "Slot": "slots", "Host": "hosts", "Refusal": "refusals",
    "CaseName": "case_names", "EventLog": "event_log", "Alarm": "alarms",
    "Notification": "notifications", "CaseCleanup": "cases",
}  # fmt: skip


def _on(event_class: type, *, creates: bool = False) -> Callable[[Handler], None]:
    table = _TABLE_OF[event_class.__qualname__.split(".")[0]]

    def register(fn: Handler) -> None:
        _HANDLERS[event_class] = (fn, table, creates)

    return register


# --- cases -----------------------------------------------------------------------------

_CLEAR_ATTEMPT: Row = {
    "host": None, "slot": None, "label": None, "remote_dir": None, "task_id": None,
    "task_created_at": None, "cancel_requested": 0, "kill_cause": None, "started_at": None,
    "seen_running_at": None,
}  # fmt: skip


def _touch(row: Row, event: Fields, state: CaseState | None = None) -> None:
    """``reason`` says why the case is where it is: a new state takes its event's reason
    (even none), other events only add theirs."""
    row["updated_at"] = event["timestamp"]
    if state is not None and state != row["state"]:
        row["state"] = state
        row["state_since"] = row["updated_at"]
        row["reason"] = event["reason"]
    elif event["reason"]:
        row["reason"] = event["reason"]


@_on(Case.Detected, creates=True)
def _detected(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(_CLEAR_ATTEMPT)
    row.update(
        case_id=e["case_id"],
        state=CaseState.WAITING,
        arrival=nid,
        attempt=0,
        detected_at=e["timestamp"],
        updated_at=e["timestamp"],
        state_since=e["timestamp"],
        file_count=e["file_count"],
        total_bytes=e["total_bytes"],
        fingerprint=e["fingerprint"],
        not_before=None,
        timeout_hours=None,
        failure=None,
        exit_code=None,
        infra_failures=0,
        results_dir=None,
        reason=e["reason"],
        remote_folders=None,
    )


@_on(Case.HeldBack)
def _held(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.HELD)
    row.update(_CLEAR_ATTEMPT)


@_on(Case.Restabilized)
def _restabilized(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.WAITING)
    row.update(
        file_count=e["file_count"], total_bytes=e["total_bytes"], fingerprint=e["fingerprint"]
    )


@_on(Case.SubmissionStarted)
def _submission_started(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.SUBMITTING)
    row.update(
        attempt=e["attempt"],
        host=e["host"],
        slot=e["slot"],
        label=e["label"],
        remote_dir=e["remote_dir"],
        not_before=None,
        started_at=None,
        seen_running_at=None,
    )
    folder = [e["host"], posixpath.dirname(e["remote_dir"])]
    folders = json.loads(row["remote_folders"] or "[]")
    if folder not in folders:
        row["remote_folders"] = json.dumps([*folders, folder])


@_on(Case.Uploaded)
def _uploaded(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e)


@_on(Case.TaskEnqueued)
def _enqueued(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.QUEUED)
    row.update(task_id=e["task_id"], task_created_at=e["created_at"])


@_on(Case.TaskStarted)
def _started(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.RUNNING)
    row.update(started_at=e["started_at"], seen_running_at=e["timestamp"])


@_on(Case.RemoteSucceeded)
def _remote_succeeded(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.RETRIEVING)
    row["kill_cause"] = None


@_on(Case.Completed)
def _completed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.COMPLETED)
    row.update(_CLEAR_ATTEMPT)
    row["results_dir"] = e["results_dir"]


@_on(Case.Failed)
def _failed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.FAILED)
    row.update(_CLEAR_ATTEMPT)
    row.update(failure=e["category"], exit_code=e["exit_code"])
    if e["category"] == FailureCategory.INFRASTRUCTURE:
        row["infra_failures"] += 1


@_on(Case.AttemptAbandoned)
def _abandoned(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.WAITING)
    row.update(_CLEAR_ATTEMPT)
    row["not_before"] = e["not_before"]
    if e["charged"]:
        row["infra_failures"] += 1


@_on(Case.KillRequested)
def _kill_requested(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.KILLING)
    row["kill_cause"] = e["cause"]


@_on(Case.CancelRequested)
def _cancel_requested(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e)
    row["cancel_requested"] = 1


@_on(Case.RetryRequested)
def _retry_requested(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.WAITING)
    row.update(failure=None, exit_code=None, infra_failures=0, not_before=None)


@_on(Case.TimeoutChanged)
def _timeout_changed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e)
    row["timeout_hours"] = e["hours"]


@_on(CaseCleanup.TaskRemoved)
def _task_removed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    pass  # the case's history shows it; its state is the same


@_on(CaseCleanup.FolderRemoved)
def _folder_removed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    folders = [
        f for f in json.loads(row["remote_folders"] or "[]") if f != [e["host"], e["folder"]]
    ]
    row["remote_folders"] = json.dumps(folders) if folders else None


# --- GPU slots -------------------------------------------------------------------------

_FREE_SLOT: Row = {
    "state": SlotState.FREE, "case_id": None, "attempt": None, "task_id": None,
    "task_label": None, "task_created_at": None,
}  # fmt: skip


def _slot_touch(batch: Batch, row: Row, e: Fields, nid: int, case_id: str | None) -> None:
    row["updated_at"] = e["timestamp"]
    row["reason"] = e["reason"]
    if case_id is not None:
        batch.links.append((case_id, nid))


@_on(Slot.Registered, creates=True)
def _slot_registered(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(_FREE_SLOT)
    row.update(host=e["host"], name=e["name"])
    _slot_touch(batch, row, e, nid, None)


@_on(Slot.Allocated)
def _allocated(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(state=SlotState.ALLOCATED, case_id=e["case_id"], attempt=e["attempt"])
    _slot_touch(batch, row, e, nid, e["case_id"])


@_on(Slot.Released)
def _released(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(_FREE_SLOT)
    _slot_touch(batch, row, e, nid, e["case_id"])


@_on(Slot.Quarantined)
def _quarantined(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        state=SlotState.QUARANTINED, task_id=e["task_id"], task_label=e["task_label"],
        task_created_at=e["task_created_at"],
    )  # fmt: skip
    _slot_touch(batch, row, e, nid, e["case_id"])


@_on(Slot.QuarantineLifted)
def _quarantine_lifted(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    case_id = row["case_id"]
    row.update(_FREE_SLOT)
    _slot_touch(batch, row, e, nid, case_id)


@_on(Slot.BusyElsewhere)
def _busy(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row["state"] = SlotState.BUSY
    _slot_touch(batch, row, e, nid, None)


@_on(Slot.FreedElsewhere)
def _freed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row["state"] = SlotState.FREE
    _slot_touch(batch, row, e, nid, None)


@_on(Slot.Resumed)
def _slot_resumed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _slot_touch(batch, row, e, nid, row["case_id"])


# --- hosts -----------------------------------------------------------------------------


def _link_host_event(batch: Batch, row: Row, nid: int) -> None:
    for key in batch.active_cases_on(row["name"]):
        batch.links.append((batch.row("cases", key)["case_id"], nid))


@_on(Host.Registered, creates=True)
def _host_registered(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        name=e["name"],
        address=e["address"],
        state=HostState.UNKNOWN,
        updated_at=e["timestamp"],
        unreachable_since=None,
        last_outage_seconds=None,
        reason=e["reason"],
    )


@_on(Host.BecameUnavailable)
def _unavailable(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _became_unavailable(batch, row, e, nid, e["state"])


@_on(Host.BecameUnreachable)  # written by earlier releases
def _unreachable(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _became_unavailable(batch, row, e, nid, HostState.UNREACHABLE)


def _became_unavailable(batch: Batch, row: Row, e: Fields, nid: int, state: str) -> None:
    row.update(
        state=state, unreachable_since=e["since"], updated_at=e["timestamp"], reason=e["reason"]
    )
    _link_host_event(batch, row, nid)


@_on(Host.BecameReachable)
def _reachable(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        state=HostState.REACHABLE,
        unreachable_since=None,
        updated_at=e["timestamp"],
        last_outage_seconds=e["outage_seconds"],
        reason=e["reason"],
    )
    _link_host_event(batch, row, nid)


# --- the log itself ----------------------------------------------------------------------


@_on(EventLog.Started, creates=True)
def _log_started(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row["log_id"] = e["log_id"]


# --- case names ------------------------------------------------------------------------


@_on(CaseName.Claimed, creates=True)
def _claimed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(name_key=e["key"], case_id=e["case_id"])


# --- refusals --------------------------------------------------------------------------


@_on(Refusal.Refused, creates=True)
def _refused(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(name_repr=e["name_repr"], reason=e["reason"], refused_at=e["timestamp"])


# --- alarms ----------------------------------------------------------------------------


@_on(Alarm.Raised, creates=True)
def _alarm_raised(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        number=nid, key=e["key"], kind=e["kind"], subject=e["subject"], message=e["message"],
        state=AlarmState.OPEN, raised_at=e["timestamp"], case_id=e["case_id"], host=e["host"],
        acknowledged_by=None, acknowledged_at=None, cleared_at=None, reason="",
    )  # fmt: skip
    _link_alarm_event(batch, row, nid)


@_on(Alarm.Acknowledged)
def _alarm_acknowledged(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        state=AlarmState.ACKNOWLEDGED, acknowledged_by=e["actor"],
        acknowledged_at=e["timestamp"], reason=e["reason"],
    )  # fmt: skip
    _link_alarm_event(batch, row, nid)


@_on(Alarm.Cleared)
def _alarm_cleared(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(state=AlarmState.CLEARED, cleared_at=e["timestamp"], reason=e["reason"])
    _link_alarm_event(batch, row, nid)


def _link_alarm_event(batch: Batch, row: Row, nid: int) -> None:
    if row["case_id"] is not None:  # `mqi history` shows a case's alarms
        batch.links.append((row["case_id"], nid))


# --- notifications ---------------------------------------------------------------------


@_on(Notification.Due, creates=True)
def _notification_due(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        number=nid, channel=e["channel"], kind=e["kind"], dedup_key=e["dedup_key"],
        fact_at=e["at"], case_id=e["case_id"], notice_state=e["state"],
        category=e["category"], host=e["host"], alarm_id=e["alarm_id"], subject=e["subject"],
        log_tail=e["log_tail"], notice_reason=e["reason"], delivered=0, attempts=0,
        last_attempt_at=None, last_detail="", delivered_at=None,
    )  # fmt: skip
    _link_notification_event(batch, row, nid)


@_on(Notification.Attempted)
def _notification_attempted(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        attempts=e["attempt"], last_attempt_at=e["timestamp"], last_detail=e["reason"],
        delivered=int(e["delivered"]), delivered_at=e["timestamp"] if e["delivered"] else None,
    )  # fmt: skip
    _link_notification_event(batch, row, nid)


def _link_notification_event(batch: Batch, row: Row, nid: int) -> None:
    if row["case_id"] is not None:  # `mqi history` shows who was told of the case, and how
        batch.links.append((row["case_id"], nid))
