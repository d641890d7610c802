"""A node short of room, with a real `mqi run`: the upload that would not fit waits (the
attempt is given up uncharged, the case waits), a node_disk_low alarm is raised, and once
there is room (here: a smaller reserve) the case runs and the alarm clears."""

from pathlib import Path

from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, cases, mqi_json, wait_for


def site(tmp_path: Path, node, reserve_gb: float) -> Path:
    return write_config(tmp_path / "site", node, alarms={"node_disk_free_gb": reserve_gb})


def test_an_upload_that_would_not_fit_waits_with_an_alarm_then_runs_once_there_is_room(
    tmp_path, sandbox_node
):
    config = site(tmp_path, sandbox_node, 1_000_000)  # more than any test machine has
    drop_case(config.parent / "incoming", "patient-1", SUCCEEDS)
    daemon = DaemonProcess(config)
    try:

        def low():
            return [a for a in mqi_json(config, "alarms") if a["kind"] == "node_disk_low"]

        (alarm,) = wait_for(low, timeout=60, daemon=daemon)
        waiting = cases(config)["patient-1"]
        assert waiting["state"] == "waiting" and waiting["infra_failures"] == 0
    finally:
        assert daemon.stop() == 0
    assert alarm["subject"] == "host sandbox" and "no case is sent there" in alarm["message"]
    assert not (sandbox_node.home / "mqi_cases" / "patient-1" / "attempt-1").exists()
    # Known low before the case came: never sent. Read low only just before its upload:
    # that attempt is given up, uncharged, and the case waits.
    history = mqi_json(config, "history", "patient-1")
    started = [e for e in history if e["event"] == "SubmissionStarted"]
    given_up = [e for e in history if e["event"] == "AttemptAbandoned"]
    assert len(given_up) == len(started) <= 1
    for event in given_up:
        assert event["details"]["charged"] is False
        assert event["reason"].startswith("node disk low: host sandbox has ")
    roomy = site(tmp_path, sandbox_node, 0.001)
    again = DaemonProcess(roomy)
    try:
        found = wait_for(all_ended(roomy, ["patient-1"]), timeout=90, daemon=again)
        wait_for(lambda: low() == [], timeout=30, daemon=again)
    finally:
        assert again.stop() == 0
    assert found["patient-1"]["state"] == "completed"
    assert found["patient-1"]["attempt"] == len(started) + 1
