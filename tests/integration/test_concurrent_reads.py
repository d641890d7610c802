"""Read commands and the daemon's writes never wait for each other (SQLite WAL)."""

import sqlite3
import threading
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.adapters.local.lock import DaemonLock
from mqi_es.app.ledger import Ledger
from projections import generations, runner
from projections.feed import EventFeed
from projections.reader import ViewReader


def make_folder(root: Path) -> tuple[Path, Ledger, EventFeed]:
    (root / "incoming").mkdir(parents=True)
    config = root / "mqi.yaml"
    config.write_text("scanner:\n  watch_path: incoming\n")
    ledger = Ledger(sqlite_event_store_env(root / "var" / "events.sqlite"))
    ledger.detect_case("c1", file_count=1, total_bytes=1, fingerprint="f", actor="daemon")
    feed = EventFeed(ledger)
    store = runner.open_views(root / "var" / "views.sqlite", feed)
    runner.catch_up(store, feed)
    store.close()
    return config, ledger, feed


def test_status_answers_while_the_daemon_is_in_the_middle_of_writing(tmp_path):
    config, _, _ = make_folder(tmp_path)
    lock = DaemonLock(tmp_path / "var" / "mqi.lock")
    lock.acquire(user="daemon")
    writers = []
    for path in (tmp_path / "var" / "events.sqlite",
                 generations.current(tmp_path / "var" / "views.sqlite")):  # fmt: skip
        writer = sqlite3.connect(path, isolation_level=None, timeout=0)
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a writer mid-transaction
        writers.append(writer)
    try:  # were it blocked, SQLite would give up with "database is locked"
        result = CliRunner().invoke(app, ["--config", str(config), "status", "--json"])
    finally:
        for writer in writers:
            writer.execute("ROLLBACK")
            writer.close()
        lock.release()
    assert result.exit_code == 0, result.output
    assert '"waiting": 1' in result.output


def test_a_long_read_does_not_block_the_daemon_writing_events_and_views(tmp_path):
    _, ledger, feed = make_folder(tmp_path)
    reader = ViewReader(tmp_path / "var" / "views.sqlite", application_name=ledger.name)
    done = threading.Event()

    def daemon_writes() -> None:
        ledger.detect_case("c2", file_count=1, total_bytes=1, fingerprint="g", actor="daemon")
        store = runner.open_views(tmp_path / "var" / "views.sqlite", feed)
        runner.catch_up(store, feed)
        store.close()
        done.set()

    with reader.snapshot() as views:  # a read transaction stays open meanwhile
        before = [c.case_id for c in views.cases()]
        writer = threading.Thread(target=daemon_writes)
        writer.start()
        assert done.wait(timeout=10), "the writer waited for the reader"
        assert [c.case_id for c in views.cases()] == before == ["c1"]  # a stable snapshot
    writer.join()
    with reader.snapshot() as views:
        assert [c.case_id for c in views.cases()] == ["c1", "c2"]
