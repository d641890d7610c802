"""The Ledger's alarm commands: raise, acknowledge, clear (mixed into ``Ledger``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from mqi_es.core.errors import AlarmNotFound
from mqi_es.core.ids import alarm_uuid
from mqi_es.core.states import AlarmKind, AlarmState, FailureCategory
from mqi_es.domain import Alarm, Case, Notification

if TYPE_CHECKING:
    from eventsourcing.application import Repository

    from mqi_es.domain.recorded import Recorded


class AlarmRecords:
    """Alarms as facts. ``repository``, ``knows`` and ``_commit`` are the Ledger's."""

    if TYPE_CHECKING:
        repository: Repository[UUID]

        def knows(self, aggregate_id: UUID) -> bool: ...

        def _commit(self, *aggregates: Recorded | None) -> int | None: ...

        def _alarm_notices(
            self, alarm: Alarm | None, *, raised: bool, actor: str
        ) -> list[Notification]: ...

    def alarm(self, alarm_id: str) -> Alarm:
        try:
            return self.repository.get(UUID(alarm_id))
        except (AggregateNotFoundError, ValueError):
            raise AlarmNotFound(f"no alarm {alarm_id!r} has been raised") from None

    def raise_alarm(
        self, key: str, *, kind: AlarmKind, subject: str, message: str, raised_at: datetime | None,
        about_case: str | None = None, host: str | None = None, actor: str,
    ) -> int | None:  # fmt: skip
        """Open an alarm; None if this very alarm was raised already."""
        if self.knows(alarm_uuid(key, raised_at)):
            return None
        alarm = _alarm(key, kind, subject, message, raised_at, about_case, host, actor=actor)
        return self._commit(alarm, *self._alarm_notices(alarm, raised=True, actor=actor))

    def acknowledge_alarm(self, alarm_id: str, *, actor: str, reason: str) -> int | None:
        found = self.alarm(alarm_id)
        found.acknowledge(actor=actor, reason=reason)
        cleared = found.state is AlarmState.CLEARED  # an alarm of a moment: dealt with
        return self._commit(
            found, *(self._alarm_notices(found, raised=False, actor=actor) if cleared else ())
        )

    def clear_alarm(self, alarm_id: str, *, actor: str, reason: str) -> int | None:
        found = self.alarm(alarm_id)
        found.clear(actor=actor, reason=reason)
        return self._commit(found, *self._alarm_notices(found, raised=False, actor=actor))

    # --- a failed case's alarm, saved with the failure -----------------------------------

    def _failure_alarm(
        self, case: Case, category: FailureCategory, reason: str, *, actor: str
    ) -> Alarm | None:
        """The alarm of the failure just decided on ``case`` (none for a cancel)."""
        key = _failure_key(case.case_id, case.attempt)
        if category is FailureCategory.CANCELLED or self.knows(alarm_uuid(key, None)):
            return None
        message = f"case {case.case_id} failed ({category.value}): {reason}"
        subject = f"case {case.case_id}"
        return _alarm(
            key, AlarmKind.CASE_FAILED, subject, message, None, case.case_id, None, actor=actor
        )

    def _failure_alarm_to_clear(self, case: Case, *, actor: str) -> Alarm | None:
        """The open alarm of the failure ``case`` is retried from, cleared."""
        try:
            key = _failure_key(case.case_id, case.attempt)
            found: Alarm = self.repository.get(alarm_uuid(key, None))
        except AggregateNotFoundError:
            return None
        if found.state is AlarmState.CLEARED:
            return None
        found.clear(actor=actor, reason="the case was retried")
        return found


def _alarm(
    key: str, kind: AlarmKind, subject: str, message: str, raised_at: datetime | None,
    case_id: str | None, host: str | None, *, actor: str,
) -> Alarm:  # fmt: skip
    """A new alarm; its message is also the reason its raise is recorded with."""
    return Alarm(
        key=key, kind=kind.value, subject=subject, message=message, raised_at=raised_at,
        case_id=case_id, host=host, actor=actor, reason=message,
    )  # fmt: skip


def _failure_key(case_id: str, attempt: int) -> str:
    return f"case-failed:{case_id}#{attempt}"
