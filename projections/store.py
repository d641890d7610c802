"""The views file: view rows and the tracking position, written together.

Each batch is written in one transaction holding its rows and the position of its last
event. Catching up reads the position, the events after it and the rows it changes all
inside that ``BEGIN IMMEDIATE`` transaction, so a crash at any point leaves either the
whole batch or none of it and no event is ever applied twice or skipped.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from mqi_es.adapters.eventstore.sqlite import ensure_private_file
from mqi_es.core.outcome import Progress
from projections import database
from projections.feed import EventFeed
from projections.projector import Batch, Row
from projections.schema import (
    INDEX_STATEMENTS,
    SCHEMA_VERSION,
    TABLE_STATEMENTS,
    TABLES,
    TIME_COLUMNS,
)


class ViewStore:
    """Writes the views of one event log (named ``application_name``) into an SQLite file,
    the rows and the position of the last event applied in one transaction."""

    def __init__(self, path: Path, *, application_name: str) -> None:
        ensure_private_file(path)
        self.path = path
        self.application_name = application_name
        fresh = not path.stat().st_size
        self._connection = database.writer(path)
        with self._transaction() as cursor:
            for statement in (database.TRACKING_TABLE, *TABLE_STATEMENTS):
                cursor.execute(statement)
            if fresh:
                cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._indexed = False
        self._upserts = {
            table: f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(cols))})"
            for table, cols in TABLES.items()
        }
        self._times = {
            table: [i for i, column in enumerate(cols) if column in TIME_COLUMNS]
            for table, cols in TABLES.items()
        }

    def position(self) -> int:
        return database.tracked(self._connection, self.application_name)

    def apply_next(self, feed: EventFeed, limit: int, stop: int | None = None) -> int:
        """Apply up to ``limit`` events after the tracked position (and up to ``stop``);
        returns how many were applied."""
        self._ensure_indexes()
        # WAL with synchronous=NORMAL never corrupts nor splits a batch from its
        # position; a power cut may only lose the last batches, applied again later.
        self._connection.execute("PRAGMA synchronous = NORMAL")
        with self._transaction() as cursor:
            position = database.tracked(self._connection, self.application_name)
            events = feed.states(after=position, limit=limit, stop=stop)
            if events:
                batch = Batch(load=_loader(cursor), cases_on_host=_host_cases(cursor))
                for notification_id, key, cls, fields in events:
                    batch.apply(key, cls, fields, notification_id)
                self._write(cursor, batch, events[-1][0])
        return len(events)

    def fill(
        self, feed: EventFeed, *, batch: int, stop: int | None, progress: Progress | None
    ) -> int:
        """Build the views of a FRESH file that nobody else writes (replay).

        Commits are not synced and indexes are built at the end, both several times
        faster; the caller syncs the finished file before using it. The cyclic garbage
        collector is paused meanwhile: events and rows hold no cycles, and its repeated
        scans of a million short-lived objects cost more than the fold itself.
        """
        if self.position() != 0:
            raise ValueError(f"{self.path} is not a fresh views file")
        head = feed.head() if stop is None else stop
        total = 0
        with _gc_paused():
            self._connection.execute("PRAGMA synchronous = OFF")
            position = 0
            while events := feed.states(after=position, limit=batch, stop=head):
                with self._transaction() as cursor:
                    current = Batch(load=_loader(cursor), cases_on_host=_host_cases(cursor))
                    for notification_id, key, cls, fields in events:
                        current.apply(key, cls, fields, notification_id)
                    position = events[-1][0]
                    self._write(cursor, current, position)
                total += len(events)
                if progress is not None:
                    progress(position, head)
        self._ensure_indexes()
        return total

    def _write(self, cursor: Any, batch: Batch, last_id: int) -> None:
        for table, rows in batch.rows.items():
            if rows:
                columns = TABLES[table]
                times = self._times[table]
                cursor.executemany(
                    self._upserts[table], [_stored(row, columns, times) for row in rows.values()]
                )
        if batch.links:
            cursor.executemany("INSERT OR IGNORE INTO case_links VALUES (?, ?)", batch.links)
        database.track(cursor, self.application_name, last_id)

    def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        with self._transaction() as cursor:
            for statement in INDEX_STATEMENTS:
                cursor.execute(statement)
        self._indexed = True

    @contextmanager
    def _transaction(self) -> Iterator[database.Cursor]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``): the position read
        in it stays the position the batch is written after."""
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            self._connection.rollback()
            raise
        self._connection.commit()

    def close(self) -> None:
        """Close the file; SQLite folds the write-ahead log into it on the last close."""
        self._connection.close()


def _stored(row: Row, columns: tuple[str, ...], times: list[int]) -> list[Any]:
    """A row's values in column order, times as ISO 8601 text (once per row, not per event)."""
    values = list(map(row.get, columns))
    for i in times:
        value = values[i]
        if value.__class__ is datetime:
            values[i] = value.isoformat()
    return values


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _loader(cursor: Any) -> Callable[[str, str], Row | None]:
    def load(table: str, key: str) -> Row | None:
        cursor.execute(f"SELECT * FROM {table} WHERE aggregate_id = ?", (key,))  # noqa: S608
        found = cursor.fetchone()
        return dict(found) if found is not None else None

    return load


def _host_cases(cursor: Any) -> Callable[[str], list[str]]:
    def cases_on(host: str) -> list[str]:
        cursor.execute("SELECT aggregate_id FROM cases WHERE host = ?", (host,))
        return [row[0] for row in cursor.fetchall()]

    return cases_on
