"""The log is the truth: a log that is missing, emptied, replaced, older than its views or
damaged is refused by every command with what happened and what to do, and never silently
replaced by a new one; damaged views are rebuilt from the log."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from mqi_es.adapters.eventstore.sqlite import inspect_log, sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from projections import generations

MQI = str(Path(sys.executable).with_name("mqi"))
runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "incoming").mkdir()
    (tmp_path / "mqi.yaml").write_text(
        "scanner:\n  watch_path: incoming\n"
        "database:\n  path: var/events.sqlite\n  views_path: var/views.sqlite\n"
    )
    return tmp_path


def mqi(folder: Path, *args: str):
    return runner.invoke(app, ["--config", str(folder / "mqi.yaml"), *args], env={"COLUMNS": "200"})


def log_of(folder: Path) -> Path:
    return folder / "var" / "events.sqlite"


def record_cases(path: Path, *names: str) -> str:
    """A log (started as the daemon starts one) holding these cases; returns its identity."""
    ledger = Ledger(sqlite_event_store_env(path))
    log_id = ledger.start_log()
    for name in names:
        ledger.detect_case(name, file_count=1, total_bytes=1, fingerprint="f", actor="daemon")
    ledger.close()
    return log_id


def with_views(folder: Path, *names: str) -> str:
    """A log with these cases and views built from it; returns the log's identity."""
    log_id = record_cases(log_of(folder), *names)
    assert mqi(folder, "status").exit_code == 0  # builds the views
    return log_id


def test_a_new_log_starts_with_its_identity_and_the_views_record_it(folder):
    log_id = with_views(folder, "p1")
    state = inspect_log(log_of(folder))
    assert state.log_id == log_id and len(log_id) == 32
    assert state.head == 3  # the identity, then p1's detection and its name claim


@pytest.mark.parametrize("how", ["removed", "emptied"])
def test_a_lost_log_with_surviving_views_is_refused_by_every_command(folder, how):
    with_views(folder, "p1", "p2")
    if how == "removed":
        log_of(folder).unlink()
    else:
        log_of(folder).write_bytes(b"")
    (folder / "incoming" / "p3").mkdir()  # a folder a fresh log would register and run

    for command in (["status"], ["cases"], ["history", "p1"], ["replay"], ["replay", "--check"]):
        result = mqi(folder, *command)
        assert result.exit_code == 1, (command, result.output)
        said = "is missing" if how == "removed" else "is empty"
        assert f"the event log {log_of(folder)} {said}, but the views" in result.output
        assert "built from 5 events of log" in result.output
        assert "Restore events.sqlite from your newest backup" in result.output
        assert "Traceback" not in result.output
    run = subprocess.run([MQI, "--config", str(folder / "mqi.yaml"), "run"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 1 and "Restore events.sqlite" in run.stderr
    assert not inspect_log(log_of(folder)).head  # nothing was recorded into a new log


def test_another_log_in_place_of_the_views_own_is_refused(folder, tmp_path_factory):
    with_views(folder, "p1")
    other = tmp_path_factory.mktemp("elsewhere") / "events.sqlite"
    other_id = record_cases(other, "x1", "x2", "x3")
    shutil.copy(other, log_of(folder))

    result = mqi(folder, "status")

    assert result.exit_code == 1
    assert f"is another log (log {other_id})" in result.output
    assert "mqi replay --accept-log" in result.output


def test_an_older_copy_of_the_log_is_refused_until_the_operator_accepts_it(
    folder, tmp_path_factory
):
    backup = tmp_path_factory.mktemp("backup") / "events.sqlite"
    record_cases(log_of(folder), "p1")
    shutil.copy(log_of(folder), backup)  # last night's backup
    ledger = Ledger(sqlite_event_store_env(log_of(folder)))
    ledger.detect_case("p2", file_count=1, total_bytes=1, fingerprint="f", actor="daemon")
    ledger.close()
    assert mqi(folder, "status").exit_code == 0
    shutil.copy(backup, log_of(folder))  # restored: two events fewer than the views

    refused = mqi(folder, "cases", "--json")
    accepted = mqi(folder, "replay", "--accept-log")
    after = mqi(folder, "cases", "--json")

    assert refused.exit_code == 1
    assert "has 3 events, fewer than the 5 the views were built from" in refused.output
    assert accepted.exit_code == 0, accepted.output
    assert after.exit_code == 0 and '"p2"' not in after.output and '"p1"' in after.output


def test_a_damaged_log_is_a_clear_message_never_a_traceback(folder):
    with_views(folder, "p1")
    data = bytearray(log_of(folder).read_bytes())
    data[:100] = b"\x00" * 100  # the SQLite header is gone
    log_of(folder).write_bytes(bytes(data))

    result = mqi(folder, "status")

    assert result.exit_code == 1, result.output
    assert f"the event log {log_of(folder)} cannot be read" in result.output
    assert "restore events.sqlite from your newest backup" in result.output
    assert "Traceback" not in result.output


def test_damaged_views_are_rebuilt_by_a_read_command_and_reported_by_replay_check(folder):
    with_views(folder, "p1", "p2")
    current = generations.current(folder / "var" / "views.sqlite")

    current.write_bytes(b"not a database" * 100)
    check = mqi(folder, "replay", "--check")
    current.write_bytes(b"not a database" * 100)
    cases = mqi(folder, "cases", "--json")

    assert check.exit_code == 1
    assert "cannot be read (file is not a database)" in check.output
    assert "Traceback" not in check.output
    assert cases.exit_code == 0, cases.output  # rebuilt from the log first
    assert '"p1"' in cases.output and '"p2"' in cases.output
    assert mqi(folder, "replay", "--check").exit_code == 0


@pytest.mark.parametrize("how", ["removed", "emptied"])
def test_a_lost_log_is_refused_even_when_the_views_are_damaged_too(folder, how):
    with_views(folder, "p1")
    generations.current(folder / "var" / "views.sqlite").write_bytes(b"not a database" * 100)
    if how == "removed":
        log_of(folder).unlink()
    else:
        log_of(folder).write_bytes(b"")

    result = mqi(folder, "status")

    assert result.exit_code == 1
    assert "and the views" in result.output and "cannot be read to tell what it held" in (
        result.output
    )
    assert not inspect_log(log_of(folder)).head


def test_accepting_a_log_never_accepts_a_missing_one(folder):
    with_views(folder, "p1")
    log_of(folder).unlink()

    result = mqi(folder, "replay", "--accept-log")

    assert result.exit_code == 1 and "is missing, but the views" in result.output
    assert mqi(folder, "replay", "--check").exit_code == 1  # the old views were kept


def test_a_read_command_never_writes_to_the_log(folder):
    ledger = Ledger(sqlite_event_store_env(log_of(folder)))  # a log of an earlier release:
    ledger.detect_case("p1", file_count=1, total_bytes=1, fingerprint="f", actor="daemon")
    ledger.close()  # no identity yet
    before = inspect_log(log_of(folder))
    for command in (["status"], ["cases"], ["history", "p1"], ["replay", "--check"]):
        assert mqi(folder, *command).exit_code == 0
    assert inspect_log(log_of(folder)) == before
