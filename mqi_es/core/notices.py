"""What a person is told, and in what words: pure.

A ``Notice`` is recorded as due in the same save as the fact it tells of (a case failed or
completed, an alarm raised or cleared), once per configured channel, and delivered at least
once: a duplicate carries the same ``dedup_key``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

LOG_LINES = 20  # of the task's log, in an email
LOG_LINE_CHARS = 300


class NoticeKind(StrEnum):
    CASE_FAILED = "case_failed"
    CASE_COMPLETED = "case_completed"
    ALARM_RAISED = "alarm_raised"
    ALARM_CLEARED = "alarm_cleared"
    TEST = "test"  # `mqi notify test`: never recorded


class NoticeTopic(StrEnum):
    """What ``notifications.on`` may name."""

    COMPLETED = "completed"
    FAILED = "failed"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class Notice:
    kind: NoticeKind
    dedup_key: str
    at: datetime  # when the fact happened (UTC)
    reason: str
    case_id: str | None = None
    state: str | None = None
    category: str | None = None
    host: str | None = None
    alarm_id: str | None = None
    subject: str = ""  # an alarm's subject ("case X", "host gpu1")
    log_tail: str = ""  # the last lines of a failed task's output


@dataclass(frozen=True, slots=True)
class Delivered:
    detail: str  # what the receiver answered, e.g. "HTTP 204", "SMTP 250 accepted"


@dataclass(frozen=True, slots=True)
class NotDelivered:
    detail: str  # why not: "HTTP 503: ...", "connection refused", "timed out after 10 s"


Delivery = Delivered | NotDelivered


def dedup_key(kind: NoticeKind, subject_id: str) -> str:
    """The same fact always gets the same key, on every channel and every resend."""
    return f"{kind.value}:{subject_id}"


def iso_utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_body(notice: Notice) -> dict[str, Any]:
    """The JSON body a webhook receives (docs/operations.md, "Notifications")."""
    return {
        "kind": notice.kind.value,
        "case_id": notice.case_id,
        "state": notice.state,
        "category": notice.category,
        "reason": notice.reason,
        "host": notice.host,
        "alarm_id": notice.alarm_id,
        "at": iso_utc(notice.at),
        "dedup_key": notice.dedup_key,
    }


def email_subject(notice: Notice) -> str:
    match notice.kind:
        case NoticeKind.CASE_FAILED:
            why = f" ({notice.category})" if notice.category else ""
            return f"MQI: case {notice.case_id} failed{why}"
        case NoticeKind.CASE_COMPLETED:
            return f"MQI: case {notice.case_id} completed"
        case NoticeKind.ALARM_RAISED:
            return f"MQI alarm: {notice.subject or 'alarm'} ({notice.state or 'open'})"
        case NoticeKind.ALARM_CLEARED:
            return f"MQI alarm cleared: {notice.subject or 'alarm'}"
        case NoticeKind.TEST:
            return "MQI: test notification"


def email_body(notice: Notice) -> str:
    """Plain text: what happened, why, the last lines of the task's log, what to run."""
    lines = [email_subject(notice), "", f"Reason: {notice.reason or '-'}"]
    for label, value in (
        ("Case", notice.case_id),
        ("State", notice.state),
        ("Category", notice.category),
        ("Host", notice.host),
        ("Alarm", notice.alarm_id),
    ):
        if value:
            lines.append(f"{label}: {value}")
    lines.append(f"At: {iso_utc(notice.at)}")
    tail = _last_lines(notice.log_tail)
    if tail:
        lines += ["", f"Last lines of the task's log ({len(tail)}):", *(f"  {t}" for t in tail)]
    if notice.case_id:
        lines += ["", "Its whole history:", f"  mqi history {shlex.quote(notice.case_id)}"]
    elif notice.alarm_id:
        lines += ["", "Acknowledge it:", f"  mqi ack {notice.alarm_id}"]
    lines += ["", f"Notification key: {notice.dedup_key}", ""]
    return "\n".join(lines)


def _last_lines(text: str) -> list[str]:
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-LOG_LINES:]
    return [line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS] + "…" for line in kept]
