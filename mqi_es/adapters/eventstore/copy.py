"""``mqi store copy``: one log copied into an empty store of either kind, SQLite to
PostgreSQL (moving to a shared log) or back (a backup), preserving every event's
notification id, aggregate id, version, topic and bytes: the copy *is* the same log (its
identity event included), so views built from one are views of the other.

One transaction on the target: a copy that fails leaves it empty. Both sides are then
read back and compared by a SHA-256 over every row, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from uuid import UUID

from mqi_es.adapters.eventstore import stores
from mqi_es.adapters.eventstore.log import LogRow
from mqi_es.config.schema import DatabaseConfig, PostgresDatabase, SqliteDatabase
from mqi_es.core.errors import LogRefused

BATCH = 10_000


@dataclass(frozen=True, slots=True)
class Copied:
    events: int
    head: int
    sha256: str  # of every row, in notification order: the same on both sides


def copy_log(
    source: DatabaseConfig,
    target: DatabaseConfig,
    *,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> Copied:
    """Copy the log of ``source`` into the empty store ``target``.

    :raises LogRefused: the source has no log, or the target is not empty, or the copy
        read back differs from the source (nothing is left half-written).
    """
    state = stores.inspect(source)
    if not state.exists or state.head == 0:
        raise LogRefused(f"the event log {source.where} holds no events: nothing to copy")
    there = stores.inspect(target)
    if there.exists and there.head > 0:
        raise LogRefused(
            f"{target.where} already holds a log ({there.head} events): a copy goes into an "
            "empty store only, so that no event of either log is lost or mixed"
        )
    stores.prepare(target)
    rows = stores.open_rows(source)
    try:
        source_digest = _Digest()

        def batches() -> Iterator[list[LogRow]]:
            position = 0
            while batch := rows.after(position, BATCH, stop=state.head):
                source_digest.add(batch)
                position = batch[-1][0]
                progress(position, state.head)
                yield batch

        _write(target, batches())
    finally:
        rows.close()
    copied = _digest_of(target, state.head)
    if copied.sha256 != source_digest.hexdigest() or copied.events != source_digest.events:
        raise LogRefused(
            f"the copy in {target.where} differs from {source.where} once read back "
            f"({copied.events} events, sha256 {copied.sha256[:12]}, against "
            f"{source_digest.events}, {source_digest.hexdigest()[:12]}): do not use it"
        )
    return copied


class _Digest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.events = 0

    def add(self, batch: list[LogRow]) -> None:
        for nid, originator, version, topic, state in batch:
            self._hash.update(f"{nid}:{UUID(originator).hex}:{version}:{topic}:".encode())
            self._hash.update(len(state).to_bytes(8, "big"))
            self._hash.update(state)
        self.events += len(batch)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _digest_of(database: DatabaseConfig, head: int) -> Copied:
    rows = stores.open_rows(database)
    try:
        digest, position = _Digest(), 0
        while batch := rows.after(position, BATCH, stop=head):
            digest.add(batch)
            position = batch[-1][0]
        return Copied(events=digest.events, head=position, sha256=digest.hexdigest())
    finally:
        rows.close()


def _write(target: DatabaseConfig, batches: Iterator[list[LogRow]]) -> None:
    match target:
        case SqliteDatabase():
            from mqi_es.adapters.eventstore.sqlite import append_rows

            append_rows(target.path, batches)
        case PostgresDatabase():
            from mqi_es.adapters.eventstore.postgres import append_rows as append_postgres_rows

            append_postgres_rows(target, batches)
