"""The views' feed reads a log through its store's reader: SQLite's own fast one, or any
recorder's public API. Both read the same rows, refuse a damaged log the same way, and
build the same views."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from mqi_es.adapters.eventstore.recorder_rows import RecorderRows
from mqi_es.adapters.eventstore.sqlite import SqliteLogRows, sqlite_event_store_env
from mqi_es.adapters.eventstore.stores import rows_of
from mqi_es.app.ledger import Ledger
from mqi_es.core.errors import LogRefused
from projections import runner
from projections.feed import EventFeed
from projections.reader import ViewReader


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(sqlite_event_store_env(tmp_path / "events.sqlite"))
    ledger.start_log()
    ledger.register_host("n1", "127.0.0.1", actor="t")
    ledger.register_slot("n1", "gpu0", actor="t")
    for i in range(30):
        ledger.detect_case(f"c{i}", file_count=1, total_bytes=1, fingerprint="f", actor="t")
    ledger.start_submission("c3", host="n1", slot="gpu0", remote_base_dir="~/m", actor="t")
    ledger.cancel_case("c7", actor="t", reason="r")
    yield ledger
    ledger.close()


def readers(ledger: Ledger) -> tuple[SqliteLogRows, RecorderRows]:
    own = rows_of(ledger.recorder)
    assert isinstance(own, SqliteLogRows)  # an SQLite log gets SQLite's own reader
    return own, RecorderRows(ledger.recorder, where="test")


def test_both_readers_read_the_same_rows_in_every_window(ledger: Ledger) -> None:
    own, public = readers(ledger)
    head = own.head()
    assert head == public.head() > 30
    for after, limit, stop in [(0, 1000, None), (0, 7, None), (5, 3, 9), (head, 10, None)]:
        assert own.after(after, limit, stop) == public.after(after, limit, stop)
    ids = [1, 2, 3, 10, 12, 13, head, head + 5]
    assert own.by_ids(ids) == public.by_ids(ids)
    assert [row[0] for row in own.by_ids(ids)] == [1, 2, 3, 10, 12, 13, head]


def test_views_built_through_either_reader_are_the_same(ledger: Ledger, tmp_path: Path) -> None:
    own, public = readers(ledger)
    shown = []
    for name, rows in (("own", own), ("public", public)):
        link = tmp_path / f"views-{name}.sqlite"
        runner.replay(link, EventFeed(ledger, rows))
        with ViewReader(link, application_name=ledger.name).snapshot() as views:
            shown.append((views.cases(), views.slots(), views.hosts(), views.position()))
    assert shown[0] == shown[1]
    assert shown[0][3] == own.head()


def test_a_damaged_log_is_refused_by_either_reader(ledger: Ledger, tmp_path: Path) -> None:
    log = tmp_path / "events.sqlite"
    ledger.close()
    size = log.stat().st_size
    with log.open("r+b") as file:  # the schema page kept, every page of events overwritten
        file.seek(4096)
        file.write(b"\xff" * (size - 4096))
    for rows in (SqliteLogRows(log), RecorderRows(_recorder_of(log), where=str(log))):
        with pytest.raises(LogRefused, match="cannot be read"):
            rows.after(0, 10)
        rows.close()


def _recorder_of(path: Path) -> SQLiteApplicationRecorder:
    return SQLiteApplicationRecorder(SQLiteDatastore(str(path)))
