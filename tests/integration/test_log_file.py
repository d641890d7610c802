"""A daemon's log file checked every cycle: gone, replaced, another log in it, or fewer
events than the views applied, each stops the daemon."""

import shutil
from pathlib import Path

import pytest

from mqi_es.adapters.eventstore.sqlite import LogFile, sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.errors import LogRefused


def new_log(path: Path, cases: int = 0) -> str:
    ledger = Ledger(sqlite_event_store_env(path))
    log_id = ledger.start_log()
    for index in range(cases):
        ledger.detect_case(f"c{index}", file_count=1, total_bytes=1, fingerprint="f", actor="d")
    ledger.close()
    return log_id


def test_the_log_the_daemon_writes_passes_as_it_grows(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    watch = LogFile(path, new_log(path, cases=2))
    watch.verify(views_position=5)
    Ledger(sqlite_event_store_env(path)).detect_case(
        "c9", file_count=1, total_bytes=1, fingerprint="f", actor="d"
    )
    watch.verify(views_position=7)


def test_another_log_copied_over_it_in_place_is_caught(tmp_path: Path):
    path, other = tmp_path / "events.sqlite", tmp_path / "other.sqlite"
    watch = LogFile(path, new_log(path, cases=1))
    new_log(other, cases=3)
    shutil.copyfile(other, path)  # the same file (inode), another log in it

    with pytest.raises(LogRefused, match="now holds another log"):
        watch.verify(views_position=3)


def test_a_log_with_fewer_events_than_the_views_applied_is_caught(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    watch = LogFile(path, new_log(path, cases=1))

    with pytest.raises(LogRefused, match=r"lost events \(3, fewer than the 9 applied\)"):
        watch.verify(views_position=9)


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_a_log_file_removed_or_replaced_is_caught(tmp_path: Path, how: str):
    path = tmp_path / "events.sqlite"
    watch = LogFile(path, new_log(path))
    if how == "removed":
        path.unlink()
    else:
        copy = tmp_path / "copy.sqlite"
        shutil.copyfile(path, copy)
        copy.replace(path)  # even the same content: another file

    with pytest.raises(LogRefused, match="was removed" if how == "removed" else "another file"):
        watch.verify(views_position=1)
