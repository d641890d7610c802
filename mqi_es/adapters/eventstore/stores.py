"""The event store, chosen by ``database.store`` (the tag of the ``database`` section): the
one module that knows which stores exist and which adapter serves each.

Everything that opens the log or reads it in bulk asks here: the eventsourcing environment
the Ledger is built on (``environment``), the log's state read without opening it for
writing (``inspect``), the guard a daemon checks its log with (``guard``), and the reader
that feeds the views (``rows_of``). A new store (PostgreSQL) is one more case in each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mqi_es.adapters.eventstore.log import LogRows, LogState
from mqi_es.adapters.eventstore.sqlite import (
    LogFile,
    SqliteLogRows,
    inspect_log,
    sqlite_event_store_env,
)
from mqi_es.config.schema import DatabaseConfig, SqliteDatabase

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder


def environment(database: DatabaseConfig) -> dict[str, str]:
    """The eventsourcing environment of the configured store."""
    match database:
        case SqliteDatabase():
            return sqlite_event_store_env(database.path)


def inspect(database: DatabaseConfig) -> LogState:
    """What the configured log holds, read without opening it for writing.

    :raises LogRefused: it cannot be read.
    """
    match database:
        case SqliteDatabase():
            return inspect_log(database.path)


def guard(database: DatabaseConfig, log_id: str) -> LogFile:
    """What a daemon checks every cycle: its log is still the one it writes to."""
    match database:
        case SqliteDatabase():
            return LogFile(database.path, log_id)


def rows_of(recorder: ApplicationRecorder) -> LogRows:
    """The fastest reader of the log ``recorder`` keeps: SQLite's own, else the
    recorder's public API (any store)."""
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    from mqi_es.adapters.eventstore.recorder_rows import RecorderRows

    if isinstance(recorder, SQLiteApplicationRecorder):
        return SqliteLogRows(Path(recorder.datastore.pool.db_name))
    return RecorderRows(recorder, where=type(recorder).__name__)
