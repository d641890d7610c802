"""Reads the event log in notification order, as domain events.

The rows are read with plain queries on a private read-only connection and decoded by
the ledger's mapper directly: about twice as fast as going through the recorder's
notification objects, and replay spends most of its time here. A reader never blocks
the writer (WAL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.sqlite import SQLiteApplicationRecorder

from mqi_es.adapters.eventstore.sqlite import log_unreadable
from mqi_es.app.ledger import Ledger

# (notification id, aggregate id as 32 hex digits, domain event)
FeedItem = tuple[int, str, Any]
# (notification id, aggregate id as 32 hex digits, event class, event fields)
StateItem = tuple[int, str, type, dict[str, Any]]

_COLUMNS = "rowid, originator_id, originator_version, topic, state"


class EventFeed:
    """The ledger's events, oldest first."""

    def __init__(self, ledger: Ledger) -> None:
        recorder = ledger.recorder
        if not isinstance(recorder, SQLiteApplicationRecorder):
            raise TypeError(f"the event feed reads SQLite event logs, not {type(recorder)}")
        self.name = ledger.name
        self._event_from = ledger.mapper.event_from
        self._state_from = ledger.mapper.state_from
        self._table = recorder.events_table_name
        self._after = (
            f"SELECT {_COLUMNS} FROM {self._table} "  # noqa: S608
            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self._path = Path(recorder.datastore.pool.db_name)
        self._rows = sqlite3.connect(
            f"file:{self._path}?mode=ro", uri=True, check_same_thread=False
        )

    def read(self, after: int, limit: int, stop: int | None = None) -> list[FeedItem]:
        """Up to ``limit`` events with ``after < notification id <= stop``."""
        return self._decoded(self._after, (after, _stop(stop), limit))

    def states(self, after: int, limit: int, stop: int | None = None) -> list[StateItem]:
        """Like ``read``, as (class, fields) pairs: what the projections fold."""
        state_from = self._state_from
        return [
            (nid, key, *state_from(topic, state))
            for nid, key, _, topic, state in self._query(self._after, (after, _stop(stop), limit))
        ]

    def aggregate(self, aggregate_id: UUID) -> list[FeedItem]:
        """Every event of one aggregate, oldest first."""
        return self._decoded(
            f"SELECT {_COLUMNS} FROM {self._table} "  # noqa: S608
            "WHERE originator_id = ? ORDER BY originator_version",
            (aggregate_id.hex,),
        )

    def by_ids(self, notification_ids: Iterable[int]) -> list[FeedItem]:
        """The events with these notification ids, oldest first."""
        items: list[FeedItem] = []
        ids = sorted(set(notification_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            items += self._decoded(
                f"SELECT {_COLUMNS} FROM {self._table} "  # noqa: S608
                f"WHERE rowid IN ({','.join('?' * len(chunk))}) ORDER BY rowid",
                chunk,
            )
        return items

    def head(self) -> int:
        """The notification id of the newest event (0 for an empty log)."""
        (row,) = self._query(f"SELECT MAX(rowid) FROM {self._table}", ())  # noqa: S608
        return row[0] or 0

    def close(self) -> None:
        self._rows.close()

    def _decoded(self, query: str, params: Iterable[Any]) -> list[FeedItem]:
        event_from = self._event_from
        return [
            (nid, key, event_from(key, version, topic, state))
            for nid, key, version, topic, state in self._query(query, tuple(params))
        ]

    def _query(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of the log; a log that cannot be read is refused (never blamed on views)."""
        try:
            return self._rows.execute(query, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise log_unreadable(self._path, exc) from None


def _stop(stop: int | None) -> int:
    return stop if stop is not None else 2**63 - 1
