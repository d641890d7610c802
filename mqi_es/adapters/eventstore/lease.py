"""Leadership of one log: a lease row in PostgreSQL, renewed by its holder.

Why a lease row, not an advisory lock: a lock lives as long as its session, so a leader
frozen by SIGSTOP keeps it forever (measured), and any blip of its connection (a restart of
the server) loses it at once; a lease lapses by itself at a time the *database's* clock
sets (one clock for every daemon), survives a reconnect, and numbers its holders: each
takeover raises ``term``, the fencing token every save of a leader is checked against in
its own transaction (``mqi_fence``). The rows also tell ``mqi status`` who leads, since
when, and which standbys are alive.

Every call is one statement in autocommit on a connection of the lease's own, bounded by
``statement_timeout``; a server that cannot be reached raises ``StoreUnreachable``
(nothing is concluded from it: the caller's own clock decides when a lease has lapsed).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from mqi_es.adapters.eventstore.postgres import connection_options, unreachable
from mqi_es.config.schema import PostgresDatabase
from mqi_es.core.errors import StoreUnreachable

_CAMPAIGN = """
INSERT INTO mqi_lease AS l (name, term, holder, holder_name, since, renewed_at, expires_at)
VALUES ('leader', 1, %(member)s, %(name)s, now(), now(), now() + %(ttl)s * interval '1 second')
ON CONFLICT (name) DO UPDATE SET
    term = l.term + 1, holder = excluded.holder, holder_name = excluded.holder_name,
    since = now(), renewed_at = now(), expires_at = excluded.expires_at
WHERE l.expires_at < now()
RETURNING term"""
_RENEW = """
UPDATE mqi_lease SET renewed_at = now(), expires_at = now() + %(ttl)s * interval '1 second'
WHERE name = 'leader' AND term = %(term)s AND holder = %(member)s AND expires_at >= now()"""
_RELEASE = """
UPDATE mqi_lease SET expires_at = now() - interval '1 microsecond'
WHERE name = 'leader' AND term = %(term)s AND holder = %(member)s"""
_SEEN = """
INSERT INTO mqi_members (member, name, pid, started_at, seen_at)
VALUES (%(member)s, %(name)s, %(pid)s, now(), now())
ON CONFLICT (member) DO UPDATE SET seen_at = now()"""


@dataclass(frozen=True, slots=True)
class Leader:
    term: int
    member: str
    name: str
    since: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Member:
    member: str
    name: str
    pid: int
    started_at: datetime
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class Standing:
    """Who leads the log and who stands by, on the database's clock (``now``)."""

    now: datetime
    leader: Leader | None  # None: nobody holds an unexpired lease
    members: tuple[Member, ...]  # the daemons seen lately, leader included

    def standbys(self) -> tuple[Member, ...]:
        led = self.leader.member if self.leader else None
        return tuple(m for m in self.members if m.member != led)


class PostgresLease:
    """The lease as one daemon (``member``, shown as ``name``) sees and holds it."""

    def __init__(self, database: PostgresDatabase, *, member: str, name: str, ttl: float) -> None:
        self.database = database
        self.member, self.name, self.ttl = member, name, ttl
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # calls come from worker threads

    def campaign(self) -> int | None:
        """Take the lease if it has lapsed (or was never taken): the new term, or None."""
        row = self._one(_CAMPAIGN, {"member": self.member, "name": self.name, "ttl": self.ttl})
        return None if row is None else int(row[0])

    def renew(self, term: int) -> bool:
        """Extend the lease of ``term``; False: it is no longer ours (lapsed or taken)."""
        params = {"member": self.member, "term": term, "ttl": self.ttl}
        return self._count(_RENEW, params) == 1

    def release(self, term: int) -> None:
        """Let the lease of ``term`` lapse now (a clean stop: a standby takes over at once)."""
        self._count(_RELEASE, {"member": self.member, "term": term})

    def seen(self) -> None:
        """Say this daemon is alive (``mqi status`` lists it)."""
        self._count(_SEEN, {"member": self.member, "name": self.name, "pid": os.getpid()})

    def leave(self) -> None:
        """This daemon stops: it is no longer listed."""
        self._count("DELETE FROM mqi_members WHERE member = %(member)s", {"member": self.member})

    def standing(self, *, seen_within: float) -> Standing:
        """The leader and the daemons seen within ``seen_within`` seconds."""
        with self._cursor() as cur:
            now = cur.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
            lease = cur.execute(
                "SELECT term, holder, holder_name, since, expires_at FROM mqi_lease "
                "WHERE name = 'leader' AND expires_at >= now()"
            ).fetchone()
            members = cur.execute(
                "SELECT member, name, pid, started_at, seen_at FROM mqi_members "
                "WHERE seen_at >= now() - %s * interval '1 second' ORDER BY started_at",
                (seen_within,),
            ).fetchall()
        return Standing(
            now=now,
            leader=Leader(*lease) if lease else None,
            members=tuple(Member(*m) for m in members),
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _one(self, query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        with self._cursor() as cur:
            return cur.execute(query, params).fetchone()

    def _count(self, query: str, params: dict[str, Any]) -> int:
        with self._cursor() as cur:
            return cur.execute(query, params).rowcount

    def _cursor(self) -> _Cursor:
        return _Cursor(self)

    def _connected(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            timeout = max(1, int(self.ttl / 4))
            self._conn = psycopg.connect(
                **connection_options(self.database), autocommit=True,
                options=f"-c statement_timeout={timeout * 1000}", connect_timeout=timeout,
            )  # fmt: skip
        return self._conn


class _Cursor:
    """One use of the lease's connection: dropped (and made again next time) on failure."""

    def __init__(self, lease: PostgresLease) -> None:
        self._lease = lease

    def __enter__(self) -> psycopg.Cursor[Any]:
        self._lease._lock.acquire()
        try:
            return self._lease._connected().cursor()
        except psycopg.Error as exc:
            self._lease._lock.release()
            raise StoreUnreachable(unreachable(self._lease.database, exc)) from None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        try:
            if isinstance(exc, psycopg.Error):
                if self._lease._conn is not None:
                    self._lease._conn.close()
                self._lease._conn = None
                raise StoreUnreachable(unreachable(self._lease.database, exc)) from None
        finally:
            self._lease._lock.release()
