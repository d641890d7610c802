"""The EventLog aggregate: the identity of one event log, recorded as its first event.

Views record the identity of the log they were built from beside their position in it, so
a log that was emptied, replaced by another or by an older copy is told from the one the
views belong to, and refused (never silently taken for a fresh start: the daemon would
register and submit every folder again).
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import event

from mqi_es.core.ids import event_log_uuid
from mqi_es.domain.recorded import Recorded


class EventLog(Recorded):
    @staticmethod
    def create_id() -> UUID:
        return event_log_uuid()

    class Started(Recorded.Created):
        log_id: str  # random, created with the log: no two logs share it

    @event(Started)
    def __init__(self, log_id: str, actor: str, reason: str = "") -> None:
        self.log_id = log_id
