"""The SQLite event store (the default: one file under ``var/``).

The environment eventsourcing builds its recorders from, the log's state and identity
read without opening it for writing, the guard of a daemon's log file, and a fast reader
of its rows for the views. Chosen by ``database.store`` in ``stores``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from mqi_es.adapters.eventstore.log import (
    LogRow,
    LogState,
    check_still_ours,
    stop_writing,
    unreadable,
)
from mqi_es.core.errors import LogRefused
from mqi_es.core.ids import event_log_uuid

# Seconds a writer waits for SQLite's lock before giving up (eventsourcing wants an int).
SQLITE_LOCK_TIMEOUT_SECONDS = 10


def ensure_private_file(path: Path) -> None:
    """Create ``path`` (and its folder) readable by the owner only, before anyone opens it.

    SQLite gives its ``-wal`` and ``-shm`` files the permissions of the database file,
    so creating the file 0600 first keeps all three private.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    path.chmod(0o600)


def sqlite_event_store_env(path: Path) -> dict[str, str]:
    """The eventsourcing environment for an SQLite event log at ``path``."""
    ensure_private_file(path)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
    }


def inspect_log(path: Path) -> LogState:
    """The state of the SQLite event log at ``path``, read-only (it is never created here).

    :raises LogRefused: the file is not a readable SQLite database.
    """
    if not path.exists():
        return LogState(exists=False, head=0, log_id=None)
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise log_unreadable(path, exc) from None
    try:
        head = connection.execute("SELECT MAX(rowid) FROM stored_events").fetchone()[0] or 0
        row = connection.execute(
            "SELECT state FROM stored_events WHERE originator_id = ? AND originator_version = 1",
            (event_log_uuid().hex,),
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return LogState(exists=True, head=0, log_id=None)  # created, nothing recorded yet
        raise log_unreadable(path, exc) from None
    except sqlite3.DatabaseError as exc:
        raise log_unreadable(path, exc) from None
    finally:
        connection.close()
    log_id = None
    if row is not None:
        try:
            log_id = str(msgspec.msgpack.decode(row[0])["log_id"])
        except (msgspec.DecodeError, KeyError, TypeError):
            raise log_unreadable(path, ValueError("its identity event is unreadable")) from None
    return LogState(exists=True, head=head, log_id=log_id)


def log_unreadable(path: Path, exc: Exception) -> LogRefused:
    """The refusal of a log that cannot be read."""
    return unreadable(str(path), exc, restore=path.name)


class LogFile:
    """The file a daemon writes its log to. A daemon whose file is removed or replaced
    under it (a new file, or another log copied over it in place) would record facts where
    nobody reads them, or number them behind its views: it must stop at once."""

    def __init__(self, path: Path, log_id: str) -> None:
        self.path = path
        self.log_id = log_id
        self._identity = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def verify(self, views_position: int) -> None:
        """:raises LogRefused: the file is gone, another file or another log took its place,
        or it holds fewer events than the views have applied."""
        now = self._stat()
        if now != self._identity:
            what = "was removed" if now is None else "was replaced by another file"
            raise stop_writing(str(self.path), what)
        check_still_ours(inspect_log(self.path), str(self.path), self.log_id, views_position)


class SqliteLogRows:
    """The rows of an SQLite log, read with plain queries on a private read-only
    connection: about three times as fast as the recorder's notification objects
    (``RecorderRows``), and replay spends most of its time here. A reader never blocks
    the writer (WAL)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._rows = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def after(self, position: int, limit: int, stop: int | None = None) -> list[LogRow]:
        """Up to ``limit`` rows with ``position < notification id <= stop``."""
        return self._query(
            f"SELECT {_COLUMNS} FROM stored_events "  # noqa: S608
            "WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (position, stop if stop is not None else 2**63 - 1, limit),
        )

    def by_ids(self, notification_ids: Iterable[int]) -> list[LogRow]:
        """The rows with these notification ids, oldest first."""
        rows: list[LogRow] = []
        ids = sorted(set(notification_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows += self._query(
                f"SELECT {_COLUMNS} FROM stored_events "  # noqa: S608
                f"WHERE rowid IN ({','.join('?' * len(chunk))}) ORDER BY rowid",
                tuple(chunk),
            )
        return rows

    def head(self) -> int:
        """The notification id of the newest event (0 for an empty log)."""
        (row,) = self._query("SELECT MAX(rowid) FROM stored_events", ())
        return row[0] or 0

    def close(self) -> None:
        self._rows.close()

    def _query(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of the log; a log that cannot be read is refused (never blamed on views)."""
        try:
            return self._rows.execute(query, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise log_unreadable(self._path, exc) from None


_COLUMNS = "rowid, originator_id, originator_version, topic, state"


def append_rows(path: Path, batches: Iterable[list[LogRow]]) -> None:
    """Write rows of another log, ids kept, in one transaction (``mqi store copy``)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for batch in batches:
            conn.executemany(
                "INSERT INTO stored_events "
                "(rowid, originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?, ?)",
                [(nid, UUID(o).hex, v, t, s) for nid, o, v, t, s in batch],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
