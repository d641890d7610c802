"""The dashboard beside a real `mqi run` (its `web:` section) and on its own (`mqi web`):
/healthz follows the daemon's cycles, /metrics shows the daemon's own counters moving."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mqi_es.sandbox.site import drop_case, simulates, write_config
from tests.e2e.daemon_harness import MQI, DaemonProcess, all_ended, wait_for
from tests.fixtures.receivers import free_port

TOKEN = "token-of-the-daemons-dashboard"


def metrics(url: str) -> dict[str, dict[tuple, float]]:
    text = httpx.get(url + "metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    return {
        f.name: {(*sorted(s.labels.items()), s.name): s.value for s in f.samples}
        for f in text_string_to_metric_families(text)
    }


def healthz(url: str) -> int:
    try:
        return httpx.get(url + "healthz", timeout=5).status_code
    except httpx.TransportError:
        return 0


def test_the_daemons_dashboard_follows_its_cycles_and_counts_its_work(tmp_path, sandbox_node):
    (tmp_path / "token").write_text(TOKEN)
    port = free_port()
    config = write_config(tmp_path / "site", sandbox_node,
                          web={"port": port, "token_file": str(tmp_path / "token")},
                          alarms={"cycle_overdue_minutes": 0.03})  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    drop_case(config.parent / "incoming", "patient-1", simulates(batches=3, seconds_per_batch=0.2))
    daemon = DaemonProcess(config)
    alone = None
    try:
        wait_for(lambda: healthz(url) == 200, timeout=60, daemon=daemon)
        wait_for(all_ended(config, ["patient-1"]), timeout=60, daemon=daemon)
        completed = (("outcome", "completed"), "mqi_attempts_total")
        # the live file is written at the end of each cycle: the next one counts it
        wait_for(lambda: metrics(url)["mqi_attempts"].get(completed) == 1, timeout=10)
        seen = metrics(url)
        cycles = seen["mqi_cycle_duration_seconds"][
            (("le", "+Inf"), "mqi_cycle_duration_seconds_bucket")
        ]
        assert cycles > 0
        polls = seen["mqi_poll_duration_seconds"]
        assert polls[(("host", "sandbox"), "mqi_poll_duration_seconds_count")] > 0
        assert seen["mqi_transitions"][(("kind", "CompleteCase"), "mqi_transitions_total")] == 1
        moved = seen["mqi_transferred_bytes"]
        assert moved[(("direction", "upload"), "mqi_transferred_bytes_total")] > 4096
        assert moved[(("direction", "download"), "mqi_transferred_bytes_total")] > 0
        assert seen["mqi_cases"][(("state", "completed"), "mqi_cases")] == 1

        # `mqi web` on its own, beside the daemon: healthy while cycles complete, 503 once
        # the daemon's loop is held longer than alarms.cycle_overdue_minutes.
        other = free_port()
        alone = subprocess.Popen([MQI, "--config", str(config), "web", "--port", str(other)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
        other_url = f"http://127.0.0.1:{other}/"
        wait_for(lambda: healthz(other_url) == 200, timeout=30)
        daemon.process.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: healthz(other_url) == 503, timeout=30)
            answer = httpx.get(other_url + "healthz").json()
            assert answer["healthy"] is False and "the last cycle completed" in answer["detail"]
        finally:
            daemon.process.send_signal(signal.SIGCONT)
        wait_for(lambda: healthz(other_url) == 200, timeout=30)
    finally:
        if alone is not None:
            alone.send_signal(signal.SIGINT)
            alone.wait(timeout=30)
        assert daemon.stop() == 0
    deadline = time.monotonic() + 10
    while healthz(url) != 0 and time.monotonic() < deadline:  # the dashboard went with it
        time.sleep(0.1)
    assert healthz(url) == 0
    assert Path(config.parent / "var").stat().st_mode & 0o077 == 0
