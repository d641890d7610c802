"""The `mqi` command as an operator uses it: through typer's runner and a real process."""

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.adapters.local.lock import DaemonLock
from mqi_es.app.ledger import Ledger
from mqi_es.core.states import FailureCategory
from projections import generations

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
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


def record_history(folder: Path) -> None:
    ledger = Ledger(sqlite_event_store_env(folder / "var" / "events.sqlite"))
    ledger.register_host("node1", "127.0.0.1", actor="daemon")
    ledger.register_slot("node1", "gpu0", actor="daemon")
    ledger.detect_case("patient-7", file_count=4, total_bytes=400, fingerprint="f", actor="daemon")
    ledger.detect_case("patient-8", file_count=1, total_bytes=1, fingerprint="g", actor="daemon")
    ledger.start_submission(
        "patient-7", host="node1", slot="gpu0", remote_base_dir="~/mqi", actor="daemon"
    )
    ledger.record_enqueued("patient-7", attempt=1, task_id=12, created_at=NOW, actor="daemon")
    ledger.fail_case(
        "patient-7", category=FailureCategory.CASE_FAILURE, actor="daemon",
        reason="tps_env exited with 2", exit_code=2, log_tail="error: dose grid",
    )  # fmt: skip
    ledger.retry_case("patient-7", actor="user:alice", reason="plan corrected")
    ledger.close()


def test_status_on_a_fresh_folder_shows_nothing_yet(folder):
    result = mqi(folder, "status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert set(status["cases"].values()) == {0}
    assert status["gpus"] == [] and status["hosts"] == []


def test_history_lists_every_event_of_a_case_oldest_first(folder):
    record_history(folder)
    result = mqi(folder, "history", "patient-7", "--json")
    assert result.exit_code == 0, result.output
    trail = json.loads(result.output)
    assert [(e["subject"], e["event"]) for e in trail] == [
        ("case patient-7", "Detected"),
        ("case patient-7", "SubmissionStarted"),
        ("gpu node1/gpu0", "Allocated"),
        ("case patient-7", "TaskEnqueued"),
        ("case patient-7", "Failed"),
        ("gpu node1/gpu0", "Released"),
        (f"alarm {trail[6]['notification_id']}", "Raised"),
        ("case patient-7", "RetryRequested"),
        (f"alarm {trail[6]['notification_id']}", "Cleared"),
    ]
    failed = trail[4]
    assert failed["details"]["exit_code"] == 2
    assert failed["reason"] == "tps_env exited with 2" and failed["actor"] == "daemon"
    assert trail[-1]["actor"] == trail[-2]["actor"] == "user:alice"
    assert trail[6]["reason"] == "case patient-7 failed (case_failure): tps_env exited with 2"
    assert [e["notification_id"] for e in trail] == sorted(e["notification_id"] for e in trail)

    table = mqi(folder, "history", "patient-7")
    assert "TaskEnqueued" in table.output and "plan corrected" in table.output


def test_an_unknown_case_is_a_clear_message_and_exit_1(folder):
    record_history(folder)
    result = mqi(folder, "history", "nobody")
    assert result.exit_code == 1
    assert "no case named 'nobody' has been registered" in result.output


def test_cases_and_gpus_show_the_current_state_without_stale_associations(folder):
    record_history(folder)
    cases = json.loads(mqi(folder, "cases", "--json").output)
    assert [(c["case_id"], c["state"]) for c in cases] == [
        ("patient-7", "waiting"),
        ("patient-8", "waiting"),
    ]
    assert cases[0]["attempt"] == 1 and cases[0]["host"] is None and cases[0]["task_id"] is None
    waiting = json.loads(mqi(folder, "cases", "--state", "failed", "--json").output)
    assert waiting == []
    gpus = json.loads(mqi(folder, "gpus", "--json").output)
    assert [(g["host"], g["name"], g["state"]) for g in gpus] == [("node1", "gpu0", "free")]
    assert "patient-8" in mqi(folder, "cases").output


def test_replay_rebuilds_and_check_finds_a_tampered_view(folder):
    record_history(folder)
    assert mqi(folder, "status").exit_code == 0  # builds the views
    result = mqi(folder, "replay")
    assert result.exit_code == 0, result.output
    assert "replayed 14 events" in result.output  # 10 facts, 2 name claims, 1 alarm raised, cleared
    assert mqi(folder, "replay", "--check").exit_code == 0
    link = folder / "var" / "views.sqlite"
    connection = sqlite3.connect(generations.current(link))
    connection.execute("UPDATE slots SET state = 'quarantined'")
    connection.commit()
    connection.close()
    checked = mqi(folder, "replay", "--check")
    assert checked.exit_code == 1
    assert "slots: 1 rows only in the live views" in checked.output


def test_replay_is_refused_while_a_daemon_holds_the_folder(folder):
    record_history(folder)
    lock = DaemonLock(folder / "var" / "mqi.lock")
    lock.acquire(user="daemon-test")
    try:
        result = mqi(folder, "replay")
    finally:
        lock.release()
    assert result.exit_code == 1
    assert "another mqi daemon already runs" in result.output
    assert f"pid {os.getpid()}" in result.output


def test_a_malformed_config_names_the_line_and_key(folder):
    (folder / "mqi.yaml").write_text("scanner:\n  watch_path: incoming\n  force_poling: true\n")
    result = mqi(folder, "config", "check")
    assert result.exit_code == 2
    assert "mqi.yaml:3" in result.output and "force_poling" in result.output


def test_config_check_prints_the_effective_configuration(folder):
    result = mqi(folder, "config", "check")
    assert result.exit_code == 0, result.output
    assert f"watch_path: {folder / 'incoming'}" in result.output


def test_the_installed_command_runs_as_a_real_process(folder):
    record_history(folder)
    env = {**os.environ, "MQI_CONFIG": str(folder / "mqi.yaml")}
    mqi_bin = Path(sys.executable).with_name("mqi")
    done = subprocess.run(
        [mqi_bin, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cases"]["waiting"] == 2
    missing = subprocess.run(
        [mqi_bin, "history", "nobody"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr and "nobody" in missing.stderr


def test_an_operator_sets_and_clears_a_cases_own_timeout(folder):
    record_history(folder)
    assert mqi(folder, "timeout", "patient-8", "48", "--reason", "long plan").exit_code == 0
    (case,) = [c for c in json.loads(mqi(folder, "cases", "--json").output)
               if c["case_id"] == "patient-8"]  # fmt: skip
    assert case["timeout_hours"] == 48
    assert mqi(folder, "timeout", "patient-8", "--clear").exit_code == 0
    trail = json.loads(mqi(folder, "history", "patient-8", "--json").output)
    assert [e["details"]["hours"] for e in trail if e["event"] == "TimeoutChanged"] == [48, None]
    refused = mqi(folder, "timeout", "patient-8", "0")
    assert refused.exit_code == 1 and "positive number of hours" in refused.output
    assert mqi(folder, "timeout", "patient-8").exit_code == 2  # neither hours nor --clear


def test_views_of_another_release_are_rebuilt_or_named_never_misread(folder):
    record_history(folder)
    assert mqi(folder, "status").exit_code == 0
    link = folder / "var" / "views.sqlite"
    old = generations.current(link)
    connection = sqlite3.connect(old)
    connection.execute("PRAGMA user_version = 1")  # as an older release would have left it
    connection.commit()
    connection.close()

    lock = DaemonLock(folder / "var" / "mqi.lock")
    lock.acquire(user="daemon-test")  # a daemon owns the views: the reader must not rebuild
    try:
        named = mqi(folder, "status")
    finally:
        lock.release()
    assert named.exit_code == 1 and "run `mqi replay`" in named.output

    rebuilt = mqi(folder, "cases", "--json")  # no daemon: rebuilt from the log, then read
    assert rebuilt.exit_code == 0 and len(json.loads(rebuilt.output)) == 2
    assert generations.current(link) != old


def test_history_shows_the_sha256_of_every_file_sent_and_fetched(folder):
    ledger = Ledger(sqlite_event_store_env(folder / "var" / "events.sqlite"))
    ledger.register_host("node1", "127.0.0.1", actor="daemon")
    ledger.register_slot("node1", "gpu0", actor="daemon")
    ledger.detect_case("p9", file_count=2, total_bytes=30, fingerprint="f", actor="daemon")
    ledger.start_submission("p9", host="node1", slot="gpu0", remote_base_dir="~/m", actor="d")
    sent = [["RP.dcm", 10, "a" * 64], ["delivery/PlanInfo.txt", 20, "b" * 64]]
    ledger.record_upload("p9", attempt=1, files=2, bytes=30, seconds=0.2, digests=sent,
                         manifest_sha256="c" * 64, actor="daemon")  # fmt: skip
    ledger.record_enqueued("p9", attempt=1, task_id=1, created_at=NOW, actor="daemon")
    ledger.record_remote_success("p9", attempt=1, ended_at=NOW, actor="daemon")
    fetched = [["output/RD.dcm", 4096, "d" * 64]]
    ledger.complete_case("p9", attempt=1, files=1, bytes=4096, results_dir="/r", digests=fetched,
                         manifest_sha256="e" * 64, actor="daemon")  # fmt: skip
    ledger.close()

    trail = json.loads(mqi(folder, "history", "p9", "--json").output)
    uploaded = next(e for e in trail if e["event"] == "Uploaded")
    completed = next(e for e in trail if e["event"] == "Completed")
    assert uploaded["details"]["digests"] == sent
    assert uploaded["details"]["manifest_sha256"] == "c" * 64
    assert completed["details"]["digests"] == fetched
    table = mqi(folder, "history", "p9").output
    assert f"{'a' * 64}  10 B  RP.dcm" in table
    assert f"{'d' * 64}  4,096 B  output/RD.dcm" in table
    assert f"manifest_sha256: {'e' * 64}" in table
