"""Where the event log lives, chosen by configuration.

SQLite is the default (one file under ``var/``); the environment built here is what
eventsourcing reads to construct its recorders, so adding PostgreSQL is a matter of
returning ``eventsourcing.postgres`` settings for ``store: postgres``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import msgspec

from mqi_es.core.errors import LogRefused
from mqi_es.core.ids import event_log_uuid

# The ledger's name: the views track their position in its log under this name.
LEDGER_NAME = "mqi"

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


@dataclass(frozen=True, slots=True)
class LogState:
    """What an SQLite event log holds, read without opening it for writing."""

    exists: bool
    head: int  # the notification id of its newest event (0: empty)
    log_id: str | None  # its identity (None: no log, or one recorded before identities)


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
    return LogRefused(
        f"the event log {path} cannot be read ({exc}): it is damaged. Nothing was changed. "
        "Stop the daemon and restore events.sqlite from your newest backup "
        "(docs/operations.md, 'Restoring the event log')"
    )


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
            raise self._stop(what)
        state = inspect_log(self.path)
        if state.log_id != self.log_id:
            raise self._stop(f"now holds another log ({state.log_id or 'without identity'})")
        if state.head < views_position:
            raise self._stop(f"lost events ({state.head}, fewer than the {views_position} applied)")

    def _stop(self, what: str) -> LogRefused:
        return LogRefused(
            f"the event log {self.path} {what} while the daemon was writing to it: the "
            "daemon stops so that no fact is recorded where nobody reads it. Put the right "
            "log back (docs/operations.md, 'Restoring the event log') and start the daemon "
            "again"
        )
