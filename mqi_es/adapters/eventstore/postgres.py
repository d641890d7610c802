"""The PostgreSQL event store (``database.store: postgres``): one log shared by a leader and
its standbys, through eventsourcing's PostgreSQL recorder (psycopg 3).

Here: the eventsourcing environment (the password read from its file, never from the
configuration), the schema created once under an advisory lock (two daemons creating
eventsourcing's tables at the same moment can fail: "tuple concurrently updated"), the
log's state read without writing, the guard a daemon checks its log with, a fast reader of
the rows for the views, and the fenced recorder: every save of a leader checks, in its own
transaction, that its term is still the lease's (``lease``), so a former leader that wakes
up records nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from eventsourcing.persistence import PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.rows import DictRow

from mqi_es.adapters.eventstore.log import LEDGER_NAME, LogRow, LogState, check_still_ours
from mqi_es.config.schema import PostgresDatabase
from mqi_es.core.errors import ConfigError, LogRefused, StoreUnreachable
from mqi_es.core.ids import event_log_uuid

log = logging.getLogger("mqi.store")

EVENTS_TABLE = f"{LEDGER_NAME}_events"  # eventsourcing names it after the application
_SCHEMA_LOCK = 0x6D7169_5C4845  # pg_advisory_lock key: creating the schema, one at a time

# Our own tables beside eventsourcing's: the lease, the daemons that share the log, and
# the fence every leader's save goes through (raises unless its term is the lease's own;
# the Ledger knows the refusal by log.FENCE_MARK).
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS mqi_lease (
        name text PRIMARY KEY, term bigint NOT NULL, holder text NOT NULL,
        holder_name text NOT NULL, since timestamptz NOT NULL,
        renewed_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mqi_members (
        member text PRIMARY KEY, name text NOT NULL, pid integer NOT NULL,
        started_at timestamptz NOT NULL, seen_at timestamptz NOT NULL)""",
    """CREATE OR REPLACE FUNCTION mqi_fence(claimed bigint) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE held bigint; lapsed boolean;
    BEGIN
        SELECT term, expires_at < now() INTO held, lapsed
            FROM mqi_lease WHERE name = 'leader' FOR SHARE;
        IF held IS DISTINCT FROM claimed OR lapsed THEN
            RAISE EXCEPTION 'mqi fenced: term % is over (the lease is at term %, lapsed %)',
                claimed, held, coalesce(lapsed, true) USING ERRCODE = 'MQ001';
        END IF;
    END $$""",
)


def password_of(database: PostgresDatabase) -> str:
    """The password in ``password_file`` (its first line), or "" for libpq's own files.

    :raises ConfigError: the file cannot be read or is empty.
    """
    if database.password_file is None:
        return ""
    try:
        text = database.password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(
            f"database.password_file {database.password_file} cannot be read: {why}"
        ) from None
    password = text.splitlines()[0] if text.strip() else ""
    if not password:
        raise ConfigError(f"database.password_file {database.password_file} is empty")
    return password


def postgres_event_store_env(database: PostgresDatabase) -> dict[str, str]:
    """The eventsourcing environment for the log in ``database`` (tables never created
    here: see ``prepare``)."""
    dsn = database.dsn
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": get_topic(FencedRecorder),
        "POSTGRES_DBNAME": dsn.dbname,
        "POSTGRES_HOST": dsn.host,
        "POSTGRES_PORT": str(dsn.port),
        "POSTGRES_USER": dsn.user,
        "POSTGRES_PASSWORD": password_of(database),
        "POSTGRES_CONNECT_TIMEOUT": str(int(database.connect_timeout_seconds)),
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_PRE_PING": "y",  # a connection the server dropped (a restart) is replaced
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
        "CREATE_TABLE": "false",
    }


def connection_options(database: PostgresDatabase) -> dict[str, Any]:
    """What psycopg connects with (the password read from its file, if one is given)."""
    dsn = database.dsn
    return {
        "host": dsn.host, "port": dsn.port, "dbname": dsn.dbname, "user": dsn.user,
        "password": password_of(database) or None,
    }  # fmt: skip


@contextmanager
def connection(database: PostgresDatabase) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection of our own (not the recorder's pool).

    :raises StoreUnreachable: the server cannot be reached or refuses us.
    """
    try:
        conn = psycopg.connect(
            **connection_options(database), autocommit=True,
            connect_timeout=int(database.connect_timeout_seconds),
        )  # fmt: skip
    except psycopg.Error as exc:
        raise StoreUnreachable(unreachable(database, exc)) from None
    try:
        yield conn
    finally:
        conn.close()


def unreachable(database: PostgresDatabase, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the event store {database.where} cannot be reached ({first})"


def prepare(database: PostgresDatabase) -> None:
    """Create the log's tables and ours if missing, one creator at a time (safe to repeat,
    and to run from two daemons at once)."""
    from eventsourcing.postgres import PostgresFactory
    from eventsourcing.utils import Environment

    with connection(database) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            env = {**postgres_event_store_env(database), "CREATE_TABLE": "true"}
            factory = PostgresFactory(Environment(LEDGER_NAME, env))
            try:
                factory.application_recorder()  # creates eventsourcing's tables
            finally:
                factory.close()
            for statement in _SCHEMA:
                conn.execute(statement)  # type: ignore[arg-type]
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


def inspect_log(database: PostgresDatabase) -> LogState:
    """The state of the log in ``database``, read-only.

    :raises StoreUnreachable: the server cannot be reached.
    :raises LogRefused: its rows cannot be read.
    """
    with connection(database) as conn:
        try:
            found = conn.execute("SELECT to_regclass(%s)", (EVENTS_TABLE,)).fetchone()
            if found is None or found[0] is None:
                return LogState(exists=False, head=0, log_id=None)
            head = conn.execute(f"SELECT MAX(notification_id) FROM {EVENTS_TABLE}").fetchone()  # noqa: S608
            row = conn.execute(
                f"SELECT state FROM {EVENTS_TABLE} "  # noqa: S608
                "WHERE originator_id = %s AND originator_version = 1",
                (event_log_uuid(),),
            ).fetchone()
        except psycopg.OperationalError as exc:
            raise StoreUnreachable(unreachable(database, exc)) from None
        except psycopg.Error as exc:
            raise _unreadable(database, exc) from None
    log_id = None
    if row is not None:
        try:
            log_id = str(msgspec.msgpack.decode(bytes(row[0]))["log_id"])
        except (msgspec.DecodeError, KeyError, TypeError):
            raise _unreadable(database, ValueError("its identity event is unreadable")) from None
    return LogState(exists=True, head=(head[0] if head else None) or 0, log_id=log_id)


def _unreadable(database: PostgresDatabase, exc: Exception) -> LogRefused:
    from mqi_es.adapters.eventstore.log import unreadable

    return unreadable(database.where, exc, restore="the database")


class PostgresLog:
    """What a daemon checks every cycle: the shared log is still the one it records in,
    and holds at least what its views applied. An unreachable server proves nothing: it is
    said, and the check passes (the records themselves will wait for the server)."""

    def __init__(self, database: PostgresDatabase, log_id: str) -> None:
        self.database = database
        self.log_id = log_id

    def verify(self, views_position: int) -> None:
        try:
            state = inspect_log(self.database)
        except StoreUnreachable as exc:
            log.warning("%s: the log is not checked this cycle", exc)
            return
        check_still_ours(state, self.database.where, self.log_id, views_position)


def open_rows(database: PostgresDatabase) -> PostgresLogRows:
    """A reader of the log's rows on a pool of its own (closed with it)."""
    from eventsourcing.postgres import PostgresFactory
    from eventsourcing.utils import Environment

    factory = PostgresFactory(Environment(LEDGER_NAME, postgres_event_store_env(database)))
    recorder = factory.application_recorder()
    assert isinstance(recorder, PostgresApplicationRecorder)
    return PostgresLogRows(recorder, owned=factory)


class PostgresLogRows:
    """The rows of the log as plain tuples, in binary: several times as fast as the
    recorder's notification objects (replay spends most of its time here)."""

    def __init__(self, recorder: PostgresApplicationRecorder, *, owned: Any = None) -> None:
        self._recorder = recorder
        self._where = f"{recorder.datastore.schema}.{recorder.events_table_name}"
        self._owned = owned  # a factory of its own, closed with the reader

    def after(self, position: int, limit: int, stop: int | None = None) -> list[LogRow]:
        return self._query(
            f"SELECT {_COLUMNS} FROM {self._recorder.events_table_name} "  # noqa: S608
            "WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s",
            (position, stop if stop is not None else 2**63 - 1, limit),
        )

    def by_ids(self, notification_ids: Iterable[int]) -> list[LogRow]:
        ids = sorted(set(notification_ids))
        if not ids:
            return []
        return self._query(
            f"SELECT {_COLUMNS} FROM {self._recorder.events_table_name} "  # noqa: S608
            "WHERE notification_id = ANY(%s) ORDER BY notification_id",
            (ids,),
        )

    def head(self) -> int:
        try:
            return self._recorder.max_notification_id() or 0
        except PersistenceError as exc:
            raise StoreUnreachable(f"the event log {self._where} cannot be read ({exc})") from None

    def close(self) -> None:
        """The connections are the recorder's pool's, closed with it unless its own."""
        if self._owned is not None:
            self._owned.close()

    def _query(self, query: str, params: Sequence[Any]) -> list[LogRow]:
        try:
            with self._recorder.datastore.get_connection() as conn:
                rows = (
                    conn.cursor(row_factory=psycopg.rows.tuple_row)
                    .execute(
                        query,
                        params,
                        binary=True,  # type: ignore[arg-type]
                    )
                    .fetchall()
                )
        except PersistenceError as exc:
            raise StoreUnreachable(f"the event log {self._where} cannot be read ({exc})") from None
        return [
            (nid, oid.hex, version, topic, bytes(state)) for nid, oid, version, topic, state in rows
        ]


_COLUMNS = "notification_id, originator_id, originator_version, topic, state"


class FencedRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, whose saves go through the fence while ``term`` is set
    (a leader's): in the save's own transaction, so a save and a takeover never overlap
    (the fence holds the lease row until the save commits)."""

    term: int | None = None

    def _insert_events(
        self, curs: psycopg.Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        if self.term is not None and stored_events:
            curs.execute("SELECT mqi_fence(%s)", (self.term,))
            curs.fetchone()  # a fetch syncs the pipeline: a refusal is raised here, unretried
        super()._insert_events(curs, stored_events, **kwargs)


class LogFollower:
    """Wakes a standby when the log grows: the recorder's ``subscribe()`` (LISTEN/NOTIFY),
    read in a thread of its own; ``broken`` once the subscription failed (a server down)."""

    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self._grew = threading.Event()
        self.broken = False
        self._subscription = recorder.subscribe(gt=recorder.max_notification_id() or 0)
        self._thread = threading.Thread(target=self._listen, name="log follower", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        try:
            for _ in self._subscription:
                self._grew.set()
        except Exception as exc:
            log.warning("the log's notifications stopped (%r)", exc)
        self.broken = True
        self._grew.set()

    def wait(self, timeout: float) -> bool:
        grew = self._grew.wait(timeout)
        self._grew.clear()
        return grew

    def close(self) -> None:
        self._subscription.stop()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._subscription.__exit__(None, None, None)


def append_rows(database: PostgresDatabase, batches: Iterable[list[LogRow]]) -> None:
    """Write rows of another log, ids kept, in one transaction (``mqi store copy``); the
    next event recorded here is numbered after them."""
    copy_rows = (
        f"COPY {EVENTS_TABLE} "
        "(notification_id, originator_id, originator_version, topic, state) FROM STDIN"
    )
    with connection(database) as conn, conn.transaction(), conn.cursor() as cur:
        with cur.copy(copy_rows) as copy:
            for batch in batches:
                for nid, originator, version, topic, state in batch:
                    copy.write_row((nid, UUID(originator), version, topic, state))
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence('{EVENTS_TABLE}', 'notification_id'), "  # noqa: S608
            f"(SELECT MAX(notification_id) FROM {EVENTS_TABLE}))"
        )
