"""Notifications from a real `mqi run`, to real receivers on loopback: a failed and a
completed case reach the webhook and the mailbox; a receiver that is down across a daemon
restart still gets what was due once it is up; `mqi notify test` and `mqi notify list`."""

import json
import subprocess
from pathlib import Path

from mqi_es.sandbox.site import EXITS_WITH_2, SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import MQI, DaemonProcess, all_ended, mqi_json, wait_for


def site(tmp_path: Path, node, http, smtp=None, **notifications) -> Path:
    told = {
        "on": ["completed", "failed", "alarm"],
        "webhook": {"url": http.url, "timeout_seconds": 2},
        "retry_backoff_seconds": 0.2,
        "retry_backoff_cap_seconds": 1,
        **notifications,
    }
    if smtp is not None:
        told["email"] = {
            "smtp_host": smtp.host, "smtp_port": smtp.port, "starttls": False,
            "from": "mqi@clinic.example", "to": ["physics-oncall@clinic.example"],
        }  # fmt: skip
    return write_config(tmp_path / "site", node, notifications=told)


def notify(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MQI, "--config", str(config), "notify", *args], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_a_failed_and_a_completed_case_reach_the_webhook_and_the_mailbox(
    tmp_path, sandbox_node, http_receiver, smtp_receiver
):
    config = site(tmp_path, sandbox_node, http_receiver, smtp_receiver)
    drop_case(config.parent / "incoming", "patient-1", SUCCEEDS)
    drop_case(config.parent / "incoming", "patient-2", EXITS_WITH_2)
    daemon = DaemonProcess(config)
    try:
        wait_for(all_ended(config, ["patient-1", "patient-2"]), timeout=90, daemon=daemon)
        http_receiver.wait_for(2, timeout=30)
        smtp_receiver.wait_for(2, timeout=30)
        wait_for(lambda: not notify_json(config, "--due"), timeout=30, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    hooks = {r.json["kind"]: r.json for r in http_receiver.requests}
    assert set(hooks) == {"case_completed", "case_failed"}  # the failure's alarm: told once
    failed = hooks["case_failed"]
    assert (failed["case_id"], failed["category"], failed["host"]) == (
        "patient-2", "case_failure", "sandbox",
    )  # fmt: skip
    assert failed["at"].endswith("Z") and failed["dedup_key"] == "case_failed:patient-2#1"
    mails = {m.message["Subject"]: m.message for m in smtp_receiver.messages}
    body = mails["MQI: case patient-2 failed (case_failure)"].get_content()
    assert "dose grid does not cover the plan" in body  # the task log's last lines
    assert "mqi history patient-2" in body
    assert "MQI: case patient-1 completed" in mails
    trail = mqi_json(config, "history", "patient-2")
    told = [(e["subject"], e["event"], e["reason"]) for e in trail if "notice" in e["subject"]]
    assert ("webhook notice", "Attempted", "HTTP 204") in told
    assert any(s == "email notice" and ev == "Attempted" for s, ev, _ in told)


def notify_json(config: Path, *args: str) -> list:
    done = notify(config, "list", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_receiver_down_across_a_restart_gets_what_was_due_once_it_is_up(
    tmp_path, sandbox_node, http_receiver
):
    http_receiver.stop()
    config = site(tmp_path, sandbox_node, http_receiver, on=["failed"])
    drop_case(config.parent / "incoming", "patient-2", EXITS_WITH_2)
    daemon = DaemonProcess(config)
    try:
        wait_for(all_ended(config, ["patient-2"]), timeout=90, daemon=daemon)
        wait_for(lambda: notify_json(config)[0]["attempts"] >= 2, timeout=30, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    (due,) = notify_json(config, "--due")
    assert "refused" in due["last_detail"]
    http_receiver.start()
    again = DaemonProcess(config)
    try:
        wait_for(lambda: not notify_json(config, "--due"), timeout=30, daemon=again)
    finally:
        assert again.stop() == 0
    (request,) = http_receiver.requests
    assert request.json["dedup_key"] == "case_failed:patient-2#1"
    (done,) = notify_json(config)
    assert done["delivered"] and done["attempts"] >= 3 and done["last_detail"] == "HTTP 204"


def test_notify_test_says_what_each_channel_did(
    tmp_path, sandbox_node, http_receiver, smtp_receiver
):
    config = site(tmp_path, sandbox_node, http_receiver, smtp_receiver)
    ok = notify(config, "test")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "webhook: delivered (HTTP 204)" in ok.stdout
    assert "email: delivered (SMTP accepted for 1 recipient(s))" in ok.stdout
    assert http_receiver.requests[0].json["kind"] == "test"
    assert smtp_receiver.messages[0].message["Subject"] == "MQI: test notification"
    http_receiver.stop()
    down = notify(config, "test")
    assert down.returncode == 1 and "webhook: NOT delivered: connection refused" in down.stdout
    assert notify_json(config) == []  # a test is never recorded
    quiet = write_config(tmp_path / "quiet", sandbox_node)
    none = notify(quiet, "test")
    assert none.returncode == 1 and "no notification channel is configured" in none.stdout
