"""How the events of alarms and notifications change their views."""

from __future__ import annotations

from mqi_es.core.states import AlarmState
from mqi_es.domain import Alarm, Notification
from projections.fold import Batch, Fields, Row, on

# --- alarms ----------------------------------------------------------------------------


@on(Alarm.Raised, creates=True)
def _alarm_raised(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        number=nid, key=e["key"], kind=e["kind"], subject=e["subject"], message=e["message"],
        state=AlarmState.OPEN, raised_at=e["timestamp"], case_id=e["case_id"], host=e["host"],
        acknowledged_by=None, acknowledged_at=None, cleared_at=None, reason="",
    )  # fmt: skip
    _link_alarm_event(batch, row, nid)


@on(Alarm.Acknowledged)
def _alarm_acknowledged(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        state=AlarmState.ACKNOWLEDGED, acknowledged_by=e["actor"],
        acknowledged_at=e["timestamp"], reason=e["reason"],
    )  # fmt: skip
    _link_alarm_event(batch, row, nid)


@on(Alarm.Cleared)
def _alarm_cleared(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(state=AlarmState.CLEARED, cleared_at=e["timestamp"], reason=e["reason"])
    _link_alarm_event(batch, row, nid)


def _link_alarm_event(batch: Batch, row: Row, nid: int) -> None:
    if row["case_id"] is not None:  # `mqi history` shows a case's alarms
        batch.links.append((row["case_id"], nid))


# --- notifications ---------------------------------------------------------------------


@on(Notification.Due, creates=True)
def _notification_due(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        number=nid, channel=e["channel"], kind=e["kind"], dedup_key=e["dedup_key"],
        fact_at=e["at"], case_id=e["case_id"], notice_state=e["state"],
        category=e["category"], host=e["host"], alarm_id=e["alarm_id"], subject=e["subject"],
        log_tail=e["log_tail"], notice_reason=e["reason"], delivered=0, attempts=0,
        last_attempt_at=None, last_detail="", delivered_at=None,
    )  # fmt: skip
    _link_notification_event(batch, row, nid)


@on(Notification.Attempted)
def _notification_attempted(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        attempts=e["attempt"], last_attempt_at=e["timestamp"], last_detail=e["reason"],
        delivered=int(e["delivered"]), delivered_at=e["timestamp"] if e["delivered"] else None,
    )  # fmt: skip
    _link_notification_event(batch, row, nid)


def _link_notification_event(batch: Batch, row: Row, nid: int) -> None:
    if row["case_id"] is not None:  # `mqi history` shows who was told of the case, and how
        batch.links.append((row["case_id"], nid))
