"""`mqi doctor`'s checks of a PostgreSQL event store: the connection, the schema, the lease
and the database server's clock, each reached as the daemon reaches them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg

from mqi_es.adapters.eventstore.postgres import EVENTS_TABLE, connection
from mqi_es.config.schema import PostgresDatabase
from mqi_es.core.checks import Finding, Verdict
from mqi_es.core.errors import ConfigError, StoreUnreachable

_TABLES = (EVENTS_TABLE, "mqi_lease", "mqi_members")


def store_findings(database: PostgresDatabase, *, max_skew: float) -> list[Finding]:
    where = database.where
    try:
        with connection(database) as conn:
            version = conn.info.server_version
            found = [
                _schema(conn),
                _lease(conn),
                _clock(conn, max_skew),
            ]
    except (StoreUnreachable, ConfigError) as exc:
        hint = (
            "check database.dsn, that the server listens there (listen_addresses, "
            "pg_hba.conf), and database.password_file (or PGPASSFILE)"
        )
        return [
            Finding("event store: connection", Verdict.FAIL, str(exc), hint),
            *(
                Finding(f"event store: {check}", Verdict.SKIP, "needs the connection")
                for check in ("schema", "lease", "clock")
            ),
        ]
    except psycopg.Error as exc:
        return [Finding("event store: connection", Verdict.FAIL, f"{where}: {exc}")]
    major, minor = divmod(version, 10000)
    connected = Finding("event store: connection", Verdict.OK,
                        f"{where}: PostgreSQL {major}.{minor}")  # fmt: skip
    return [connected, *found]


def _schema(conn: psycopg.Connection) -> Finding:
    missing = [
        table for table in _TABLES
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None  # type: ignore[index]
    ]  # fmt: skip
    fence = conn.execute("SELECT to_regprocedure('mqi_fence(bigint)')").fetchone()[0]  # type: ignore[index]
    if fence is None:
        missing.append("mqi_fence()")
    if missing:
        return Finding(
            "event store: schema", Verdict.WARN, f"not created yet: {', '.join(missing)}",
            "the first `mqi run` creates them (one daemon at a time)",
        )  # fmt: skip
    events = conn.execute(f"SELECT MAX(notification_id) FROM {EVENTS_TABLE}").fetchone()[0]  # type: ignore[index]  # noqa: S608
    return Finding("event store: schema", Verdict.OK, f"the log holds {events or 0} events")


def _lease(conn: psycopg.Connection) -> Finding:
    if conn.execute("SELECT to_regclass('mqi_lease')").fetchone()[0] is None:  # type: ignore[index]
        return Finding("event store: lease", Verdict.SKIP, "no lease table yet")
    row = conn.execute(
        "SELECT term, holder_name, since, expires_at >= now(), expires_at - now() FROM mqi_lease"
    ).fetchone()
    standbys = conn.execute(
        "SELECT count(*) FROM mqi_members m WHERE seen_at >= now() - interval '1 minute' "
        "AND NOT EXISTS (SELECT 1 FROM mqi_lease l WHERE l.holder = m.member "
        "AND l.expires_at >= now())"
    ).fetchone()[0]  # type: ignore[index]
    if row is None or not row[3]:
        return Finding(
            "event store: lease", Verdict.WARN,
            f"no daemon leads this log now ({standbys} standing by)",
            "start `mqi run` (or check why the leader stopped: its log, systemctl status mqi)",
        )  # fmt: skip
    term, name, since, _, left = row
    return Finding(
        "event store: lease", Verdict.OK,
        f"{name} leads (term {term}, since {since:%Y-%m-%d %H:%M:%S %Z}, renewed "
        f"{left.total_seconds():.1f} s ahead); {standbys} standing by",
    )  # fmt: skip


def _clock(conn: psycopg.Connection, max_skew: float) -> Finding:
    """The database server's clock against ours, read in one round trip. The lease runs on
    the server's clock alone; facts are dated by each daemon's, so daemons far off it
    would date one log's facts out of order."""
    before = time.time()
    server: datetime = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    after = time.time()
    ours = datetime.fromtimestamp((before + after) / 2, UTC)
    skew = (server - ours).total_seconds()
    said = f"the server's clock is {abs(skew):.2f} s {'ahead of' if skew > 0 else 'behind'} ours"
    if abs(skew) > max_skew:
        hint = "run NTP (chrony, systemd-timesyncd) on this machine and on the server"
        return Finding("event store: clock", Verdict.WARN, said, hint)
    return Finding("event store: clock", Verdict.OK, said)
