"""Reads the event log in notification order, as the projections fold it.

The rows come from the event store's reader (``mqi_es.adapters.eventstore.stores``,
chosen by the store that keeps the log) and are decoded by the ledger's mapper directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mqi_es.adapters.eventstore.log import LogRows
from mqi_es.adapters.eventstore.stores import rows_of
from mqi_es.app.ledger import Ledger

# (notification id, aggregate id as 32 hex digits, domain event)
FeedItem = tuple[int, str, Any]
# (notification id, aggregate id as 32 hex digits, event class, event fields)
StateItem = tuple[int, str, type, dict[str, Any]]


class EventFeed:
    """The ledger's events, oldest first (``rows``: another reader of the same log)."""

    def __init__(self, ledger: Ledger, rows: LogRows | None = None) -> None:
        self.name = ledger.name
        self._event_from = ledger.mapper.event_from
        self._state_from = ledger.mapper.state_from
        self._rows = rows if rows is not None else rows_of(ledger.recorder)

    def states(self, after: int, limit: int, stop: int | None = None) -> list[StateItem]:
        """Up to ``limit`` events with ``after < notification id <= stop``, as (class,
        fields) pairs: what the projections fold."""
        state_from = self._state_from
        return [
            (nid, key, *state_from(topic, state))
            for nid, key, _, topic, state in self._rows.after(after, limit, stop)
        ]

    def by_ids(self, notification_ids: Iterable[int]) -> list[FeedItem]:
        """The events with these notification ids, oldest first."""
        event_from = self._event_from
        return [
            (nid, key, event_from(key, version, topic, state))
            for nid, key, version, topic, state in self._rows.by_ids(notification_ids)
        ]

    def head(self) -> int:
        """The notification id of the newest event (0 for an empty log)."""
        return self._rows.head()

    def close(self) -> None:
        self._rows.close()
