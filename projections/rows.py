"""Rows of the views file into the frozen views (``mqi_es.core.views``), column for column
as ``projections.schema`` lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mqi_es.core.notices import Notice, NoticeKind
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
from mqi_es.core.views import AlarmView, CaseView, HostView, NotificationView, SlotView

fromiso = datetime.fromisoformat
# Enum lookups by value through a dict: calling the enum class costs more than the rest of
# a row, and the daemon reads every active case each cycle.
_CASE_STATE = {s.value: s for s in CaseState}
_SLOT_STATE = {s.value: s for s in SlotState}
_HOST_STATE = {s.value: s for s in HostState}
_KILL_CAUSE = {c.value: c for c in KillCause}
_FAILURE = {f.value: f for f in FailureCategory}


def _time(value: str | None) -> Any:
    return fromiso(value) if value is not None else None


def case_row(row: tuple[Any, ...]) -> CaseView:
    (
        _,
        case_id,
        state,
        state_since,
        arrival,
        attempt,
        detected_at,
        updated_at,
        file_count,
        total_bytes,
        fingerprint,
        host,
        slot,
        label,
        remote_dir,
        task_id,
        task_created_at,
        started_at,
        seen_running_at,
        not_before,
        timeout_hours,
        cancel_requested,
        kill_cause,
        failure,
        exit_code,
        infra_failures,
        results_dir,
        reason,
        _remote_folders,  # housekeeping's (``leftovers``)
        progress_done,
        progress_total,
        progress_at,
        node,
    ) = row  # in CASE_COLUMNS order
    return CaseView(
        case_id=case_id,
        state=_CASE_STATE[state],
        arrival=arrival,
        attempt=attempt,
        detected_at=fromiso(detected_at),
        updated_at=fromiso(updated_at),
        state_since=fromiso(state_since),
        file_count=file_count,
        total_bytes=total_bytes,
        fingerprint=fingerprint,
        host=host,
        slot=slot,
        label=label,
        remote_dir=remote_dir,
        task_id=task_id,
        task_created_at=_time(task_created_at),
        started_at=_time(started_at),
        seen_running_at=_time(seen_running_at),
        not_before=_time(not_before),
        timeout_hours=timeout_hours,
        cancel_requested=bool(cancel_requested),
        kill_cause=_KILL_CAUSE[kill_cause] if kill_cause else None,
        failure=_FAILURE[failure] if failure else None,
        exit_code=exit_code,
        infra_failures=infra_failures,
        results_dir=results_dir,
        reason=reason or "",
        progress=None if progress_total is None else RunProgress(progress_done, progress_total),
        progress_at=_time(progress_at),
        node=node,
    )


def slot_row(row: tuple[Any, ...]) -> SlotView:
    (
        _,
        host,
        name,
        state,
        updated_at,
        case_id,
        attempt,
        task_id,
        task_label,
        task_created_at,
        reason,
    ) = row  # in SLOT_COLUMNS order
    return SlotView(
        host=host,
        name=name,
        state=_SLOT_STATE[state],
        updated_at=fromiso(updated_at),
        case_id=case_id,
        attempt=attempt,
        task_id=task_id,
        task_label=task_label,
        task_created_at=_time(task_created_at),
        reason=reason or "",
    )


def host_row(row: tuple[Any, ...]) -> HostView:
    _, name, address, state, updated_at, since, outage, reason = row  # HOST_COLUMNS order
    return HostView(
        name=name,
        address=address,
        state=_HOST_STATE[state],
        updated_at=fromiso(updated_at),
        unreachable_since=_time(since),
        last_outage_seconds=outage,
        reason=reason or "",
    )


_ALARM_KIND = {k.value: k for k in AlarmKind}
_ALARM_STATE = {s.value: s for s in AlarmState}


def alarm_row(row: tuple[Any, ...]) -> AlarmView:
    (aggregate_id, number, key, kind, subject, message, state, raised_at, case_id, host,
     acknowledged_by, acknowledged_at, cleared_at, reason) = row  # fmt: skip
    return AlarmView(
        alarm_id=aggregate_id, number=number, key=key, kind=_ALARM_KIND[kind], subject=subject,
        message=message, state=_ALARM_STATE[state], raised_at=fromiso(raised_at),
        case_id=case_id, host=host, acknowledged_by=acknowledged_by,
        acknowledged_at=_time(acknowledged_at), cleared_at=_time(cleared_at), reason=reason,
    )  # fmt: skip


_NOTICE_KIND = {k.value: k for k in NoticeKind}


def notification_row(row: tuple[Any, ...]) -> NotificationView:
    (aggregate_id, number, channel, kind, dedup_key, fact_at, case_id, notice_state, category,
     host, alarm_id, subject, log_tail, notice_reason, delivered, attempts, last_attempt_at,
     last_detail, delivered_at) = row  # fmt: skip
    notice = Notice(
        kind=_NOTICE_KIND[kind], dedup_key=dedup_key, at=fromiso(fact_at),
        reason=notice_reason, case_id=case_id, state=notice_state, category=category,
        host=host, alarm_id=alarm_id, subject=subject, log_tail=log_tail,
    )  # fmt: skip
    return NotificationView(
        notification_id=aggregate_id, number=number, channel=channel, notice=notice,
        delivered=bool(delivered), attempts=attempts, last_attempt_at=_time(last_attempt_at),
        last_detail=last_detail, delivered_at=_time(delivered_at),
    )  # fmt: skip
