"""The views' SQLite file: the one module of ``projections`` that speaks to SQLite itself.

Connections (read-only for readers, one writer), the tracking position (the one query
every reader of it uses) and what a damaged file looks like. The views are a cache of the
log in a file of their own: whatever store keeps the log, they are SQLite.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

Connection = sqlite3.Connection
Cursor = sqlite3.Cursor
DatabaseError = sqlite3.DatabaseError
OperationalError = sqlite3.OperationalError

LOCK_TIMEOUT_SECONDS = 10.0  # how long the writer waits for a reader's lock

# Where the views stand in the log, in the same file and transaction as the rows: a batch
# and its position are written together or not at all.
TRACKING_TABLE = (
    "CREATE TABLE IF NOT EXISTS tracking (application_name TEXT, notification_id INTEGER,"
    " PRIMARY KEY (application_name)) WITHOUT ROWID"
)
_TRACK = (
    "INSERT INTO tracking VALUES (?, ?) ON CONFLICT (application_name) "
    "DO UPDATE SET notification_id = excluded.notification_id"
)

_DAMAGE_SIGNS = ("file is not a database", "malformed", "no such table", "no such column")


def read_only(path: Path) -> Connection:
    """A connection that can never change the file (nor create it)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def writer(path: Path) -> Connection:
    """The writer's connection: rows as mappings, transactions begun explicitly, WAL so
    that readers never block it nor it them."""
    connection = sqlite3.connect(
        str(path), timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode = WAL")
    return connection


def tracked(connection: Connection, application_name: str, *, schema: str = "main") -> int:
    """The notification id of the last event applied to the views (0: none yet, or no
    tracking table: created, nothing applied)."""
    try:
        row = connection.execute(
            f"SELECT notification_id FROM {schema}.tracking WHERE application_name = ?",  # noqa: S608
            (application_name,),
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return row[0] if row else 0


def track(cursor: Connection | Cursor, application_name: str, position: int) -> None:
    """Record the views' position, inside the transaction that wrote the rows."""
    cursor.execute(_TRACK, (application_name, position))


def user_version(path: Path) -> int | None:
    """The schema version kept in the file; None for a file that is damaged."""
    connection = read_only(path)
    try:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        if views_damage(exc) is None:
            raise
        return None
    finally:
        connection.close()


def views_damage(exc: BaseException) -> str | None:
    """What an exception from SQLite says is wrong with a views file itself: not a
    database, malformed, a table or column missing. None for anything else (a lock, a
    full disk, a constraint, a closed connection: not the file's content, and not cured
    by rebuilding it)."""
    cause = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    if not isinstance(cause, sqlite3.DatabaseError):
        return None
    text = str(cause)
    return text if any(sign in text for sign in _DAMAGE_SIGNS) else None
