"""The Notification aggregate: telling one channel of one fact, at least once.

Recorded as due in the same save as the fact it tells of (so a crash cannot lose it), then
each attempt to deliver it is a fact too: delivered, or not and why. A duplicate delivery
(the daemon stopped between sending and recording) carries the same ``dedup_key``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from mqi_es.core.errors import InvalidTransition
from mqi_es.core.ids import notification_uuid
from mqi_es.core.notices import Notice, NoticeKind
from mqi_es.domain.recorded import Recorded


class Notification(Recorded):
    @staticmethod
    def create_id(channel: str, dedup_key: str) -> UUID:
        return notification_uuid(channel, dedup_key)

    class Due(Recorded.Created):
        channel: str
        dedup_key: str
        kind: str
        at: datetime
        case_id: str | None
        state: str | None
        category: str | None
        host: str | None
        alarm_id: str | None
        subject: str
        log_tail: str

    @event(Due)
    def __init__(
        self, channel: str, dedup_key: str, kind: str, at: datetime, case_id: str | None,
        state: str | None, category: str | None, host: str | None, alarm_id: str | None,
        subject: str, log_tail: str, actor: str, reason: str,
    ) -> None:  # fmt: skip
        self.channel = channel
        self.notice = Notice(
            kind=NoticeKind(kind), dedup_key=dedup_key, at=at, reason=reason, case_id=case_id,
            state=state, category=category, host=host, alarm_id=alarm_id, subject=subject,
            log_tail=log_tail,
        )  # fmt: skip
        self.attempts = 0
        self.delivered = False

    @classmethod
    def of(cls, channel: str, notice: Notice, *, actor: str) -> Notification:
        return cls(
            channel=channel, dedup_key=notice.dedup_key, kind=notice.kind.value, at=notice.at,
            case_id=notice.case_id, state=notice.state, category=notice.category,
            host=notice.host, alarm_id=notice.alarm_id, subject=notice.subject,
            log_tail=notice.log_tail, actor=actor, reason=notice.reason,
        )  # fmt: skip

    class Attempted(Recorded.Event):
        attempt: int
        delivered: bool  # the reason says what the receiver answered, or why not

    def record_attempt(self, *, delivered: bool, actor: str, detail: str) -> None:
        if self.delivered:
            raise InvalidTransition(f"notification {self.notice.dedup_key} was delivered already")
        self._attempted(attempt=self.attempts + 1, delivered=delivered, actor=actor, reason=detail)

    @event(Attempted)
    def _attempted(self, attempt: int, delivered: bool, actor: str, reason: str) -> None:
        self.attempts = attempt
        self.delivered = delivered
