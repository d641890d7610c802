"""The daemon's views: written after every recorded fact, read every cycle."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

from mqi_es.application import Ledger
from mqi_es.views import CaseView
from projections.feed import EventFeed
from projections.reader import Snapshot, ViewReader
from projections.runner import catch_up, open_views


class LiveViews:
    """Views kept by the daemon, their only writer while it runs (``mqi_es.ports.Views``)."""

    def __init__(self, ledger: Ledger, link: Path) -> None:
        self.feed = EventFeed(ledger)
        self.store = open_views(link, self.feed)  # rebuilt first if another release built it
        self.reader = ViewReader(link, application_name=ledger.name)

    def catch_up(self) -> int:
        return catch_up(self.store, self.feed)

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        return self.reader.snapshot()

    def case(self, case_id: str) -> CaseView | None:
        with self.reader.snapshot() as views:
            return views.case(case_id)

    def close(self) -> None:
        self.store.close()
        self.feed.close()
