"""`mqi alarms`, `mqi ack` and `mqi status`'s exit code, as an operator runs them."""

import json
import subprocess

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.states import FailureCategory
from tests.e2e.daemon_harness import MQI
from tests.e2e.test_cli import folder, mqi

__all__ = ["folder"]


def fail_a_case(folder, case_id: str = "patient-3") -> None:
    ledger = Ledger(sqlite_event_store_env(folder / "var" / "events.sqlite"))
    ledger.detect_case(case_id, file_count=1, total_bytes=1, fingerprint="f", actor="daemon")
    ledger.fail_case(case_id, category=FailureCategory.INFRASTRUCTURE, actor="daemon",
                     reason="lost 3 attempts")  # fmt: skip
    ledger.close()


def test_status_exits_3_while_an_alarm_is_open_and_lists_it_first(folder):
    fail_a_case(folder)
    result = mqi(folder, "status")
    assert result.exit_code == 3, result.output
    assert result.output.index("Open alarms") < result.output.index("Cases")
    assert "case patient-3 failed (infrastructure): lost 3 attempts" in result.output
    status = json.loads(mqi(folder, "status", "--json").output)
    (alarm,) = status["open_alarms"]
    assert (alarm["kind"], alarm["state"], alarm["case_id"]) == ("case_failed", "open", "patient-3")


def test_the_installed_command_exits_3_too_for_plain_status_and_status_json(folder):
    fail_a_case(folder)  # `mqi status` has its own fast path past typer: same exit codes
    for args in (["status"], ["status", "--json"]):
        done = subprocess.run(
            [MQI, "--config", str(folder / "mqi.yaml"), *args], capture_output=True, timeout=60
        )
        assert done.returncode == 3, done


def test_ack_records_the_operator_and_status_is_clean_again(folder):
    fail_a_case(folder)
    (alarm,) = json.loads(mqi(folder, "alarms", "--json").output)
    acked = mqi(folder, "ack", str(alarm["number"]), "--reason", "node replaced")
    assert acked.exit_code == 0, acked.output
    assert f"alarm {alarm['number']} (case_failed, case patient-3): acknowledged" in acked.output
    assert mqi(folder, "status").exit_code == 0
    assert json.loads(mqi(folder, "alarms", "--json").output) == []  # a failure, dealt with
    (seen,) = json.loads(mqi(folder, "alarms", "--all", "--json").output)
    assert seen["state"] == "cleared" and seen["acknowledged_by"].startswith("user:")
    assert seen["reason"] == "acknowledged"
    history = json.loads(mqi(folder, "history", "patient-3", "--json").output)
    acks = [e for e in history if e["event"] == "Acknowledged"]
    assert [a["reason"] for a in acks] == ["node replaced"]


def test_ack_of_an_unknown_or_already_acknowledged_alarm_says_so_and_exits_1(folder):
    fail_a_case(folder)
    unknown = mqi(folder, "ack", "999")
    assert unknown.exit_code == 1
    assert "no alarm number 999 (`mqi alarms --all` lists them)" in unknown.output
    (alarm,) = json.loads(mqi(folder, "alarms", "--json").output)
    assert mqi(folder, "ack", str(alarm["number"])).exit_code == 0
    again = mqi(folder, "ack", str(alarm["number"]))
    assert again.exit_code == 1 and "is cleared, not open" in again.output


def test_alarms_lists_standing_alarms_newest_first_and_all_of_them_with_all(folder):
    fail_a_case(folder, "patient-1")
    fail_a_case(folder, "patient-2")
    table = mqi(folder, "alarms")
    assert table.exit_code == 0
    assert table.output.index("patient-2") < table.output.index("patient-1")
    assert "Standing alarms (2)" in table.output
    assert mqi(folder, "retry", "patient-1").exit_code == 0  # clears its alarm
    assert [a["case_id"] for a in json.loads(mqi(folder, "alarms", "--json").output)] == [
        "patient-2"
    ]
    everything = json.loads(mqi(folder, "alarms", "--all", "--json").output)
    assert [(a["case_id"], a["state"]) for a in everything] == [
        ("patient-2", "open"), ("patient-1", "cleared"),
    ]  # fmt: skip
