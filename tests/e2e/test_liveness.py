"""Liveness of a real `mqi run`: systemd hears it is ready and alive over a real notify
socket; `mqi status` tells when its last cycle completed and warns when that is long past;
a loop that was held raises `cycle_overdue` once it runs again."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mqi_es.sandbox.site import write_config
from tests.e2e.daemon_harness import MQI, DaemonProcess, mqi_json, notify_listener, wait_for


@pytest.fixture
def site(tmp_path: Path, sandbox_node):
    # 3 cycles of 0.5 s: the smallest overdue limit the configuration accepts is 1.5 s.
    return write_config(tmp_path / "site", sandbox_node, alarms={"cycle_overdue_minutes": 0.03})


def status(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MQI, "--config", str(config), "status"], capture_output=True, text=True, timeout=60
    )


def test_systemd_hears_ready_after_the_first_cycle_then_alive_after_each(site, tmp_path):
    listener = notify_listener(tmp_path / "notify")
    daemon = DaemonProcess(site, env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    try:
        first = listener.recv(4096).decode().splitlines()
        assert first[:2] == ["READY=1", "WATCHDOG=1"], first
        assert first[2].startswith("STATUS=0 active case(s); last cycle completed ")
        later = [listener.recv(4096).decode().splitlines() for _ in range(3)]
        assert all(m[0] == "WATCHDOG=1" and "READY=1" not in m for m in later), later
        shown = status(site)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "last cycle: completed " in shown.stdout and "OVERDUE" not in shown.stdout
        assert mqi_json(site, "status")["last_cycle_overdue"] is False
    finally:
        assert daemon.stop() == 0
        listener.settimeout(5)
        told = []
        while "STOPPING=1" not in told:
            told = listener.recv(4096).decode().splitlines()
        listener.close()


def test_a_held_loop_makes_status_exit_4_and_raises_cycle_overdue_when_it_runs_again(site):
    daemon = DaemonProcess(site)
    try:
        wait_for(lambda: mqi_json(site, "status")["last_cycle_at"], timeout=30, daemon=daemon)
        daemon.process.send_signal(signal.SIGSTOP)  # the loop is stuck, the process alive
        try:
            time.sleep(3)
            shown = status(site)
            assert shown.returncode == 4, shown.stdout + shown.stderr
            assert "OVERDUE" in shown.stdout
            assert json.loads(
                subprocess.run(
                    [MQI, "--config", str(site), "status", "--json"],
                    capture_output=True, text=True, timeout=60,
                ).stdout
            )["last_cycle_overdue"] is True  # fmt: skip
        finally:
            daemon.process.send_signal(signal.SIGCONT)

        def overdue_alarm():
            alarms = mqi_json(site, "alarms")
            return [a for a in alarms if a["kind"] == "cycle_overdue"]

        (alarm,) = wait_for(overdue_alarm, timeout=30, daemon=daemon)
        assert alarm["subject"] == "daemon" and alarm["state"] == "open"
        assert "its loop was held" in alarm["message"]
        wait_for(lambda: status(site).returncode == 3, timeout=30, daemon=daemon)  # alarm only
    finally:
        assert daemon.stop() == 0
