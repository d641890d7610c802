"""The audit trail of one case: its own events and the slot and host events about it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mqi_es.core.errors import CaseNotFound
from mqi_es.core.ids import case_uuid
from projections.feed import EventFeed, FeedItem
from projections.reader import ViewSnapshot

# Fields every event has; the rest of an event's fields are its details.
_COMMON = {
    "originator_id",
    "originator_version",
    "timestamp",
    "originator_topic",
    "actor",
    "reason",
    "term",
}


@dataclass(frozen=True)
class HistoryEntry:
    notification_id: int
    time: datetime
    subject: str  # "case c1", "gpu node1/gpu0", "host node1"
    event: str  # e.g. "SubmissionStarted"
    actor: str
    reason: str
    details: dict[str, Any]
    term: int | None = None  # the leadership term it was recorded under (a shared log)

    def to_json(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "time": self.time.isoformat(),
            "subject": self.subject,
            "event": self.event,
            "actor": self.actor,
            "reason": self.reason,
            "term": self.term,
            "details": {
                k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.details.items()
            },
        }


def case_history(feed: EventFeed, views: ViewSnapshot, case_id: str) -> list[HistoryEntry]:
    """Every event of the case, with the slot and host events that concern it, oldest
    first: the views know which events these are (``case_links``), the log holds them."""
    if views.case(case_id) is None:
        raise CaseNotFound(f"no case named {case_id!r} has been registered")
    names = views.subject_names()
    names[case_uuid(case_id).hex] = f"case {case_id}"
    return [_entry(item, names) for item in feed.by_ids(views.linked_notifications(case_id))]


def _entry(item: FeedItem, names: dict[str, str]) -> HistoryEntry:
    notification_id, key, event = item
    name = type(event).__qualname__.partition(".")[2]
    state = vars(event)
    return HistoryEntry(
        notification_id=notification_id,
        time=event.timestamp,
        subject=names.get(key, key),
        event=name,
        actor=state.get("actor", ""),
        reason=state.get("reason", ""),
        details={k: v for k, v in state.items() if k not in _COMMON},
        term=state.get("term"),
    )
