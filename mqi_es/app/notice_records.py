"""The Ledger's notifications: due with the fact they tell of, then each attempt recorded
(mixed into ``Ledger``). Which facts are told, and through which channels, is the
``NoticePlan`` of the configuration (``notifications``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from mqi_es.core.errors import NotificationNotFound
from mqi_es.core.ids import notification_uuid
from mqi_es.core.notices import Notice, NoticeKind, NoticeTopic, dedup_key
from mqi_es.core.states import AlarmKind
from mqi_es.domain import Alarm, Notification

if TYPE_CHECKING:
    from eventsourcing.application import Repository

    from mqi_es.domain.recorded import Recorded

_TOPIC = {
    NoticeKind.CASE_FAILED: NoticeTopic.FAILED,
    NoticeKind.CASE_COMPLETED: NoticeTopic.COMPLETED,
    NoticeKind.ALARM_RAISED: NoticeTopic.ALARM,
    NoticeKind.ALARM_CLEARED: NoticeTopic.ALARM,
}


@dataclass(frozen=True, slots=True)
class NoticePlan:
    """``channels``: the configured channels' names; ``topics``: what ``notifications.on``
    names. No channel: nothing is ever due."""

    channels: tuple[str, ...] = ()
    topics: frozenset[NoticeTopic] = frozenset()

    def wants(self, kind: NoticeKind) -> bool:
        return bool(self.channels) and _TOPIC[kind] in self.topics


class NoticeRecords:
    """Notifications as facts. ``repository``, ``knows`` and ``_commit`` are the Ledger's."""

    notices: NoticePlan = NoticePlan()

    if TYPE_CHECKING:
        repository: Repository[UUID]

        def knows(self, aggregate_id: UUID) -> bool: ...

        def _commit(self, *aggregates: Recorded | None) -> int | None: ...

    def notification(self, notification_id: str) -> Notification:
        try:
            return self.repository.get(UUID(notification_id))
        except (AggregateNotFoundError, ValueError):
            raise NotificationNotFound(f"no notification {notification_id!r} is due") from None

    def record_delivery(
        self, notification_id: str, *, delivered: bool, detail: str, actor: str
    ) -> int | None:
        """One attempt to deliver: delivered, or not and why (``detail``)."""
        found = self.notification(notification_id)
        found.record_attempt(delivered=delivered, actor=actor, detail=detail)
        return self._commit(found)

    # --- due with their fact --------------------------------------------------------------

    def _due(self, notice: Notice, *, actor: str) -> list[Notification]:
        """``notice`` due on every configured channel, if the plan wants its kind (and it is
        not due already: a fact is told once per channel)."""
        if not self.notices.wants(notice.kind):
            return []
        return [
            Notification.of(channel, notice, actor=actor)
            for channel in self.notices.channels
            if not self.knows(notification_uuid(channel, notice.dedup_key))
        ]

    def _case_notice(
        self, kind: NoticeKind, case_id: str, attempt: int, at: datetime, *, reason: str,
        state: str, category: str | None = None, host: str | None = None, log_tail: str = "",
    ) -> Notice:  # fmt: skip
        return Notice(
            kind=kind, dedup_key=dedup_key(kind, f"{case_id}#{attempt}"), at=at, reason=reason,
            case_id=case_id, state=state, category=category, host=host, log_tail=log_tail,
        )  # fmt: skip

    def _alarm_notices(
        self, alarm: Alarm | None, *, raised: bool, actor: str
    ) -> list[Notification]:
        """The notices of ``alarm`` just ``raised`` (or else cleared). A failed case's alarm
        is told as the case's failure where failures are told already."""
        if alarm is None:
            return []
        told_as_failure = self.notices.wants(NoticeKind.CASE_FAILED)
        if raised and alarm.kind is AlarmKind.CASE_FAILED and told_as_failure:
            return []
        kind = NoticeKind.ALARM_RAISED if raised else NoticeKind.ALARM_CLEARED
        notice = Notice(
            kind=kind, dedup_key=dedup_key(kind, alarm.id.hex), at=alarm.modified_on,
            reason=alarm.message if raised else f"{alarm.last_reason} ({alarm.cleared_by})",
            case_id=alarm.case_id,
            state=alarm.state.value, host=alarm.host, alarm_id=alarm.id.hex,
            subject=alarm.subject,
        )  # fmt: skip
        return self._due(notice, actor=actor)
