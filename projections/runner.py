"""Keeping the views current (catch-up), rebuilding them (replay) and checking them."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mqi_es.core.outcome import Progress
from projections import database, generations
from projections.feed import EventFeed
from projections.reader import ViewsUnreadable
from projections.schema import TABLES, is_current
from projections.store import ViewStore

CATCH_UP_BATCH = 2_000
REPLAY_BATCH = 10_000


def open_views(link: Path, feed: EventFeed) -> ViewStore:
    """The writable current views of ``feed``'s log; views built by a release with another
    schema are first rebuilt from the log (they are never a source of truth)."""
    path = generations.current(link)
    if path.exists() and path.stat().st_size and not is_current(path):
        path = replay(link, feed).path
    return ViewStore(path, application_name=feed.name)


def catch_up(
    store: ViewStore,
    feed: EventFeed,
    *,
    batch: int = CATCH_UP_BATCH,
    stop: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Apply every event not yet in the views (up to ``stop``); returns how many."""
    head = feed.head() if stop is None else stop
    total = 0
    while applied := store.apply_next(feed, batch, stop=head):
        total += applied
        if progress is not None:
            progress(store.position(), head)
    return total


@dataclass(frozen=True)
class ReplaySummary:
    events: int
    seconds: float
    path: Path

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def rebuild(
    path: Path, feed: EventFeed, *, stop: int | None = None, progress: Progress | None = None
) -> ReplaySummary:
    """Build the views of the whole log (up to ``stop``) into the fresh file ``path``."""
    started = time.perf_counter()
    store = ViewStore(path, application_name=feed.name)
    try:
        events = store.fill(feed, batch=REPLAY_BATCH, stop=stop, progress=progress)
    finally:
        store.close()  # the last close folds the write-ahead log into the file
    with path.open("rb") as built:
        os.fsync(built.fileno())
    return ReplaySummary(events, time.perf_counter() - started, path)


def replay(link: Path, feed: EventFeed, *, progress: Progress | None = None) -> ReplaySummary:
    """Rebuild every view from the log into a new generation and swap it in atomically."""
    fresh = generations.next_generation(link)
    summary = rebuild(fresh, feed, progress=progress)
    generations.swap_in(link, fresh)
    return summary


@dataclass(frozen=True)
class Difference:
    table: str
    only_live: list[str] = field(default_factory=list)  # aggregate ids
    only_rebuilt: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckReport:
    position: int
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences


def check(link: Path, feed: EventFeed, *, progress: Progress | None = None) -> CheckReport:
    """Rebuild aside and compare with the live views at the same log position.

    The live views are read in one read transaction (a snapshot), so a daemon that keeps
    applying events meanwhile changes nothing in the comparison.
    """
    live = generations.current(link)
    aside = generations.scratch(link, "check")
    try:
        return _check(live, aside, feed, progress)
    except database.DatabaseError as exc:
        if (damage := database.views_damage(exc)) is None:
            raise
        raise ViewsUnreadable(live, damage) from None
    finally:
        for leftover in aside.parent.glob(aside.name + "*"):
            leftover.unlink(missing_ok=True)


def _check(live: Path, aside: Path, feed: EventFeed, progress: Progress | None) -> CheckReport:
    rebuild(aside, feed, stop=_position(live, feed.name), progress=progress)
    connection = database.read_only(live)
    try:
        connection.execute("ATTACH DATABASE ? AS aside", (f"file:{aside}?mode=ro",))
        connection.execute("BEGIN")
        position = database.tracked(connection, feed.name)
        rebuilt_position = database.tracked(connection, feed.name, schema="aside")
        if position > rebuilt_position:
            # The daemon moved on while we rebuilt: bring the copy to the same point.
            connection.execute("ROLLBACK")
            connection.execute("DETACH DATABASE aside")
            store = ViewStore(aside, application_name=feed.name)
            try:
                catch_up(store, feed, stop=position)
            finally:
                store.close()
            connection.execute("ATTACH DATABASE ? AS aside", (f"file:{aside}?mode=ro",))
            connection.execute("BEGIN")
            position = database.tracked(connection, feed.name)
        differences = [d for table in _KEYS if (d := _compare(connection, table))]
        connection.execute("ROLLBACK")
    finally:
        connection.close()
    return CheckReport(position, differences)


def _position(path: Path, name: str) -> int:
    connection = database.read_only(path)
    try:
        return database.tracked(connection, name)
    finally:
        connection.close()


_KEYS = {table: "aggregate_id" for table in TABLES} | {
    "case_links": "case_id || '@' || notification_id"
}


def _compare(connection: database.Connection, table: str) -> Difference | None:
    """Rows of ``table`` that differ between the live views and the rebuilt copy."""

    def only(left: str, right: str) -> list[str]:
        rows = connection.execute(
            f"SELECT {_KEYS[table]} FROM (SELECT * FROM {left}.{table} "  # noqa: S608
            f"EXCEPT SELECT * FROM {right}.{table}) ORDER BY 1"
        )
        return [row[0] for row in rows]

    live, rebuilt = only("main", "aside"), only("aside", "main")
    return Difference(table, live, rebuilt) if live or rebuilt else None
