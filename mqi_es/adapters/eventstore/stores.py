"""The event store, chosen by ``database.store`` (the tag of the ``database`` section): the
one module that knows which stores exist and which adapter serves each.

Everything that opens the log or reads it in bulk asks here: the eventsourcing environment
the Ledger is built on (``environment``), the log's state read without opening it for
writing (``inspect``), the guard a daemon checks its log with (``guard``), and the reader
that feeds the views (``rows_of``). PostgreSQL's adapter is imported only when it is
configured (psycopg is not loaded for an SQLite log).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mqi_es.adapters.eventstore.log import LEDGER_NAME, LogRows, LogState
from mqi_es.adapters.eventstore.sqlite import (
    LogFile,
    SqliteLogRows,
    inspect_log,
    sqlite_event_store_env,
)
from mqi_es.config.schema import DatabaseConfig, PostgresDatabase, SqliteDatabase

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder

    from mqi_es.adapters.eventstore.postgres import PostgresLog


def environment(database: DatabaseConfig) -> dict[str, str]:
    """The eventsourcing environment of the configured store."""
    match database:
        case SqliteDatabase():
            return sqlite_event_store_env(database.path)
        case PostgresDatabase():
            from mqi_es.adapters.eventstore.postgres import postgres_event_store_env

            return postgres_event_store_env(database)


def prepare(database: DatabaseConfig) -> None:
    """Make the store ready to be written (a daemon, ``mqi store copy``): its tables made
    if missing (PostgreSQL's one daemon at a time)."""
    match database:
        case SqliteDatabase():
            from eventsourcing.sqlite import SQLiteFactory
            from eventsourcing.utils import Environment

            factory = SQLiteFactory(Environment(LEDGER_NAME, sqlite_event_store_env(database.path)))
            try:
                factory.application_recorder()  # creates its table
            finally:
                factory.close()
        case PostgresDatabase():
            from mqi_es.adapters.eventstore.postgres import prepare as prepare_postgres

            prepare_postgres(database)


def open_rows(database: DatabaseConfig) -> LogRows:
    """A reader of the configured log's rows of its own (closed by ``close()``)."""
    match database:
        case SqliteDatabase():
            return SqliteLogRows(database.path)
        case PostgresDatabase():
            from mqi_es.adapters.eventstore.postgres import open_rows as open_postgres_rows

            return open_postgres_rows(database)


def inspect(database: DatabaseConfig) -> LogState:
    """What the configured log holds, read without opening it for writing.

    :raises LogRefused: it cannot be read.
    """
    match database:
        case SqliteDatabase():
            return inspect_log(database.path)
        case PostgresDatabase():
            from mqi_es.adapters.eventstore.postgres import inspect_log as inspect_postgres

            return inspect_postgres(database)


def guard(database: DatabaseConfig, log_id: str) -> LogFile | PostgresLog:
    """What a daemon checks every cycle: its log is still the one it writes to."""
    match database:
        case SqliteDatabase():
            return LogFile(database.path, log_id)
        case PostgresDatabase():
            from mqi_es.adapters.eventstore.postgres import PostgresLog

            return PostgresLog(database, log_id)


def rows_of(recorder: ApplicationRecorder) -> LogRows:
    """The fastest reader of the log ``recorder`` keeps: SQLite's or PostgreSQL's own,
    else the recorder's public API (any store)."""
    from eventsourcing.sqlite import SQLiteApplicationRecorder

    from mqi_es.adapters.eventstore.recorder_rows import RecorderRows

    if isinstance(recorder, SQLiteApplicationRecorder):
        return SqliteLogRows(Path(recorder.datastore.pool.db_name))
    if "eventsourcing.postgres" in sys.modules:  # never imported for an SQLite log
        from eventsourcing.postgres import PostgresApplicationRecorder

        from mqi_es.adapters.eventstore.postgres import PostgresLogRows

        if isinstance(recorder, PostgresApplicationRecorder):
            return PostgresLogRows(recorder)
    return RecorderRows(recorder, where=type(recorder).__name__)
