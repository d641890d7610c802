"""The Alarm aggregate: one occurrence of a condition an operator must know about.

Raised once when its condition starts (``key`` names the condition), acknowledged by an
operator (who has seen it), cleared when the condition ends or, for an alarm that stands
for a moment (a failed case), when it has been dealt with. A condition that starts again
after it was cleared is a new alarm.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from mqi_es.core.errors import InvalidTransition
from mqi_es.core.ids import alarm_uuid
from mqi_es.core.states import STICKY_ALARMS, AlarmKind, AlarmState
from mqi_es.domain.recorded import Recorded


class Alarm(Recorded):
    @staticmethod
    def create_id(key: str, raised_at: datetime | None) -> UUID:
        return alarm_uuid(key, raised_at)

    class Raised(Recorded.Created):
        key: str
        kind: str
        subject: str
        message: str
        raised_at: datetime | None
        case_id: str | None
        host: str | None

    @event(Raised)
    def __init__(
        self, key: str, kind: str, subject: str, message: str, raised_at: datetime | None,
        case_id: str | None, host: str | None, actor: str, reason: str = "",
    ) -> None:  # fmt: skip
        self.key = key
        self.kind = AlarmKind(kind)
        self.subject, self.message = subject, message
        self.case_id, self.host = case_id, host
        self.state = AlarmState.OPEN
        self.last_reason = reason

    class Acknowledged(Recorded.Event):
        pass

    def acknowledge(self, *, actor: str, reason: str) -> None:
        """An operator has seen it; an alarm that stood for a moment is then dealt with."""
        if self.state is not AlarmState.OPEN:
            raise InvalidTransition(f"alarm {self.key} is {self.state}, not open")
        self._acknowledged(actor=actor, reason=reason)
        if self.kind in STICKY_ALARMS:
            self._cleared(actor=actor, reason="acknowledged")

    @event(Acknowledged)
    def _acknowledged(self, actor: str, reason: str) -> None:
        self.state = AlarmState.ACKNOWLEDGED

    class Cleared(Recorded.Event):
        pass

    def clear(self, *, actor: str, reason: str) -> None:
        if self.state is AlarmState.CLEARED:
            raise InvalidTransition(f"alarm {self.key} is cleared already")
        self._cleared(actor=actor, reason=reason)

    @event(Cleared)
    def _cleared(self, actor: str, reason: str) -> None:
        self.state = AlarmState.CLEARED
        self.last_reason, self.cleared_by = reason, actor
