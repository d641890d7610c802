"""The daemon's views: written after every recorded fact, read every cycle.

The daemon owns them: views it cannot read (a damaged file, another release's) are rebuilt
from the log on the spot, with an alarm line, and the daemon carries on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from mqi_es.app.ledger import Ledger
from mqi_es.core.views import CaseView
from projections import database, generations
from projections.feed import EventFeed
from projections.reader import ViewReader, ViewSnapshot, ViewsOutdated, ViewsUnreadable
from projections.runner import catch_up, open_views, replay
from projections.store import ViewStore
from projections.writer_lock import WriterLock

log = logging.getLogger("mqi.views")


class LiveViews:
    """Views kept by the daemon, their only writer while it runs (``mqi_es.app.ports.Views``)."""

    def __init__(self, ledger: Ledger, link: Path) -> None:
        self.link = link
        self.writer = WriterLock(link)  # theirs alone while the daemon runs
        self.writer.acquire(wait=True)
        try:
            self.feed = EventFeed(ledger)
            self.store = open_views(link, self.feed)  # rebuilt first if unreadable or outdated
        except BaseException:
            self.writer.release()
            raise
        self.reader = ViewReader(link, application_name=ledger.name)

    def catch_up(self) -> int:
        try:
            return catch_up(self.store, self.feed)
        except (database.DatabaseError, ViewsUnreadable) as exc:
            self._rebuild_if_damaged(exc)
            return catch_up(self.store, self.feed)

    def position(self) -> int:
        """How far into the log the views are."""
        return self.store.position()

    def snapshot(self) -> AbstractContextManager[ViewSnapshot]:
        return self._snapshot()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[ViewSnapshot]:
        try:
            with self.reader.snapshot() as views:
                yield views
        except (ViewsUnreadable, ViewsOutdated) as exc:
            self._rebuild_if_damaged(exc)
            raise  # this reading is lost; the next one reads the rebuilt views

    def case(self, case_id: str) -> CaseView | None:
        with self.snapshot() as views:
            return views.case(case_id)

    def close(self) -> None:
        self.store.close()
        self.feed.close()
        self.writer.release()

    def _rebuild_if_damaged(self, exc: Exception) -> None:
        """Rebuild views that cannot be read from the log; anything else is not ours."""
        if isinstance(exc, ViewsUnreadable):
            damage: str | None = exc.problem
        elif isinstance(exc, ViewsOutdated):
            damage = str(exc)
        else:
            damage = database.views_damage(exc)
        if damage is None:
            raise exc
        log.error("ALARM the views %s cannot be read (%s): rebuilding them from the log",
                  self.link, damage)  # fmt: skip
        with contextlib.suppress(Exception):  # closing a damaged file may fail too
            self.store.close()
        try:
            summary = replay(self.link, self.feed)
        finally:  # rebuilt or not, the daemon keeps a store it can write (or try again)
            self.store = ViewStore(generations.current(self.link), application_name=self.feed.name)
        log.warning("the views were rebuilt from %d events into %s", summary.events,
                    summary.path.name)  # fmt: skip
