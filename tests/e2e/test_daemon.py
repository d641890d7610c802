"""`mqi run` end to end, against the sandbox GPU node over real SSH."""

import stat
import subprocess
import time
from pathlib import Path

import pytest

from cli.context import cli_actor
from mqi_es.sandbox.site import (
    EXITS_WITH_2,
    NEVER_ENDS,
    SLOW_FIRST_ATTEMPT,
    SUCCEEDS,
    drop_case,
    write_config,
)
from tests.e2e.daemon_harness import (
    MQI,
    DaemonProcess,
    all_ended,
    cases,
    mqi_json,
    remote_labels,
    wait_for,
)


@pytest.fixture
def site(tmp_path: Path, sandbox_node):
    config = write_config(
        tmp_path / "site", sandbox_node,
        main_loop={"running_case_timeout_hours": 0.002},  # 7.2 s
    )  # fmt: skip
    return config, sandbox_node


def test_three_cases_end_as_completed_failed_and_timed_out(site):
    config, node = site
    incoming = config.parent / "incoming"
    drop_case(incoming, "patient 1 plan", SUCCEEDS)
    drop_case(incoming, "patient-2", EXITS_WITH_2)
    drop_case(incoming, "patient-3", NEVER_ENDS)
    daemon = DaemonProcess(config)
    try:
        names = ["patient 1 plan", "patient-2", "patient-3"]
        found = wait_for(all_ended(config, names), timeout=90, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    ok, failed, slow = (found[n] for n in names)
    assert ok["state"] == "completed" and ok["host"] is None and ok["task_id"] is None
    result = Path(ok["results_dir"]) / "output" / "RD_beam1.dcm"
    assert result.read_text().startswith("RT Dose, beam 1, for ")
    assert (failed["state"], failed["failure"], failed["exit_code"]) == (
        "failed", "case_failure", 2,
    )  # fmt: skip
    failure = next(e for e in mqi_json(config, "history", "patient-2") if e["event"] == "Failed")
    assert "dose grid does not cover the plan" in failure["details"]["log_tail"]
    assert (slow["state"], slow["failure"]) == ("failed", "timeout")
    (slow_task,) = [t for t in node.status()["tasks"].values() if t["label"] == "mqi:patient-3:a1"]
    assert slow_task["status"]["Done"]["result"] == "Killed"
    assert all(g["state"] == "free" for g in mqi_json(config, "gpus"))
    assert len(remote_labels(node)) == len(set(remote_labels(node))) == 3
    for path in (config.parent / "var").rglob("*"):  # event log, views, logs, results, lock
        if not path.is_symlink():
            expected = 0o700 if path.is_dir() else 0o600
            assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_an_outage_fails_nothing_and_work_resumes(site):
    config, node = site
    incoming = config.parent / "incoming"
    drop_case(incoming, "during-outage", "sleep 3\n" + SUCCEEDS)
    daemon = DaemonProcess(config)
    try:
        wait_for(lambda: cases(config).get("during-outage", {}).get("state") == "running",
                 timeout=30, daemon=daemon)  # fmt: skip
        node.stop_ssh()
        time.sleep(20)  # the outage: the task finishes meanwhile, unseen
        assert cases(config)["during-outage"]["state"] == "running"
        node.start_ssh()
        found = wait_for(all_ended(config, ["during-outage"]), timeout=40, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert found["during-outage"]["state"] == "completed"
    host_events = [e["event"] for e in mqi_json(config, "history", "during-outage")
                   if e["subject"] == "host sandbox"]  # fmt: skip
    assert host_events == ["BecameUnavailable", "BecameReachable"]


def test_a_pueue_restart_resubmits_the_running_case_which_then_completes(site):
    config, node = site
    drop_case(config.parent / "incoming", "interrupted", SLOW_FIRST_ATTEMPT)
    daemon = DaemonProcess(config)
    try:
        wait_for(lambda: cases(config).get("interrupted", {}).get("state") == "running",
                 timeout=30, daemon=daemon)  # fmt: skip
        node.restart_pueue_daemon()
        found = wait_for(all_ended(config, ["interrupted"]), timeout=60, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    case = found["interrupted"]
    assert (case["state"], case["attempt"], case["infra_failures"]) == ("completed", 2, 1)
    assert sorted(remote_labels(node)) == ["mqi:interrupted:a1", "mqi:interrupted:a2"]


def test_a_second_daemon_on_the_same_folder_says_who_holds_it(site):
    config, _ = site
    first = DaemonProcess(config)
    try:
        wait_for(lambda: (config.parent / "var" / "mqi.lock").exists()
                 and (config.parent / "var" / "mqi.lock").read_text(), timeout=20)  # fmt: skip
        second = subprocess.run([MQI, "--config", str(config), "run"], capture_output=True,
                                text=True, timeout=60)  # fmt: skip
    finally:
        assert first.stop() == 0
    assert second.returncode == 1
    assert "another mqi daemon already runs" in second.stderr
    assert f"pid {first.process.pid}" in second.stderr
    assert (config.parent / "var" / "mqi.lock").read_text() == ""  # released on a clean stop


def test_a_case_changed_after_registration_is_held_then_sent_once_stable_again(site):
    config, node = site
    for group in ("gpu0", "gpu1"):  # someone else's jobs keep both GPUs busy
        assert node.pueue("add", f"--group={group}", "--", "sleep 600").returncode == 0
    case_dir = drop_case(config.parent / "incoming", "edited", SUCCEEDS)
    daemon = DaemonProcess(config)
    try:
        wait_for(lambda: cases(config).get("edited", {}).get("state") == "waiting",
                 timeout=30, daemon=daemon)  # fmt: skip
        wait_for(lambda: all(g["state"] == "busy" for g in mqi_json(config, "gpus")),
                 timeout=30, daemon=daemon)  # fmt: skip
        with (case_dir / "RP.plan.dcm").open("ab") as plan:
            plan.write(b"a late correction of the plan")
        for task_id in ("0", "1"):
            node.pueue("kill", task_id)
        found = wait_for(all_ended(config, ["edited"]), timeout=60, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    case = found["edited"]
    assert case["state"] == "completed"
    events = [e["event"] for e in mqi_json(config, "history", "edited")]
    assert events.index("HeldBack") < events.index("Restabilized") < events.index("Completed")
    sent = node.home / "mqi_cases" / "edited" / f"attempt-{case['attempt']}" / "RP.plan.dcm"
    assert sent.read_bytes() == (case_dir / "RP.plan.dcm").read_bytes()


def test_operator_cancel_and_retry_are_honoured_by_a_running_daemon(site):
    config, node = site
    drop_case(config.parent / "incoming", "to-cancel", NEVER_ENDS)

    def mqi(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([MQI, "--config", str(config), *args], capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    def state() -> str | None:
        return cases(config).get("to-cancel", {}).get("state")

    daemon = DaemonProcess(config)
    try:
        wait_for(lambda: state() == "running", timeout=30, daemon=daemon)
        refused = mqi("retry", "to-cancel")
        assert refused.returncode == 1 and "only a failed case can be retried" in refused.stderr
        assert mqi("cancel", "to-cancel", "--reason", "wrong plan").returncode == 0
        wait_for(lambda: state() == "failed", timeout=30, daemon=daemon)
        assert cases(config)["to-cancel"]["failure"] == "cancelled"
        assert all(g["state"] == "free" for g in mqi_json(config, "gpus"))
        assert mqi("retry", "to-cancel", "--reason", "plan fixed").returncode == 0
        wait_for(lambda: state() == "running", timeout=30, daemon=daemon)
        assert cases(config)["to-cancel"]["attempt"] == 2
        assert mqi("cancel", "to-cancel").returncode == 0
        wait_for(lambda: state() == "failed", timeout=30, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    finished = mqi("cancel", "to-cancel")
    assert finished.returncode == 1 and "nothing to cancel" in finished.stderr
    results = {t["label"]: t["status"]["Done"]["result"] for t in node.status()["tasks"].values()}
    assert results == {"mqi:to-cancel:a1": "Killed", "mqi:to-cancel:a2": "Killed"}
    trail = mqi_json(config, "history", "to-cancel")
    asked = [e for e in trail if e["event"] in ("CancelRequested", "RetryRequested")]
    me = cli_actor()
    assert [(e["event"], e["actor"]) for e in asked] == [
        ("CancelRequested", me), ("RetryRequested", me), ("CancelRequested", me),
    ]  # fmt: skip
    assert asked[0]["reason"] == "wrong plan"


def test_unsafe_names_are_refused_once_and_links_outside_a_case_hold_it(site):
    config, _ = site
    incoming = config.parent / "incoming"
    (incoming / "-rf").mkdir()
    (incoming / "-rf" / "plan.dcm").write_bytes(b"x")
    linked = drop_case(incoming, "linked", SUCCEEDS)
    (linked / "beam1" / "machine.log").symlink_to("/etc/hostname")
    daemon = DaemonProcess(config)
    try:
        status = wait_for(lambda: (s := mqi_json(config, "status"))["refused_folders"] and
                          s["cases"]["held"] == 1 and s, timeout=30, daemon=daemon)  # fmt: skip
        time.sleep(2)  # several more scans: still recorded once
        assert len(mqi_json(config, "status")["refused_folders"]) == 1
    finally:
        assert daemon.stop() == 0
    (refused,) = status["refused_folders"]
    assert refused["name_repr"] == "-rf" and "'-'" in refused["reason"]
    held = cases(config)["linked"]
    assert held["state"] == "held" and "outside" in held["reason"]
    assert daemon.output().count("'-rf'") == 1  # one clear line, not one per scan
