"""`mqi watch` in a real terminal: tmux, 80x24, keys sent and the screen read back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.context import load_context
from mqi_es.core.states import FailureCategory

TMUX = shutil.which("tmux")
MQI = str(Path(sys.executable).with_name("mqi"))
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "incoming").mkdir()
    config = tmp_path / "mqi.yaml"
    config.write_text(
        "scanner:\n  watch_path: incoming\n"
        "database:\n  path: var/events.sqlite\n  views_path: var/views.sqlite\n"
    )
    ledger = load_context(str(config)).ledger
    ledger.register_host("n1", "127.0.0.1", actor="daemon")
    for slot in ("gpu0", "gpu1"):
        ledger.register_slot("n1", slot, actor="daemon")
    for i in range(30):
        ledger.detect_case(f"patient-{i:03d}", file_count=1, total_bytes=1, fingerprint="f",
                           actor="daemon")  # fmt: skip
    ledger.start_submission("patient-000", host="n1", slot="gpu0", remote_base_dir="~",
                            actor="daemon")  # fmt: skip
    ledger.record_enqueued("patient-000", attempt=1, task_id=1, created_at=NOW, actor="daemon")
    ledger.record_started("patient-000", attempt=1, started_at=NOW, actor="daemon")
    ledger.record_progress("patient-000", attempt=1, done=9, total=18, actor="daemon")
    ledger.start_submission("patient-001", host="n1", slot="gpu1", remote_base_dir="~",
                            actor="daemon")  # fmt: skip
    ledger.record_enqueued("patient-001", attempt=1, task_id=2, created_at=NOW, actor="daemon")
    ledger.fail_case(
        "patient-001", category=FailureCategory.CASE_FAILURE, actor="daemon",
        reason="task 2 exited 2", exit_code=2, log_tail="loading plan\nCUDA error: out of memory",
    )  # fmt: skip
    return config


class Terminal:
    """A tmux session of its own (own server socket, no user configuration), 80x24."""

    def __init__(self, command: list[str]) -> None:
        self.socket = f"mqi-test-{uuid.uuid4().hex[:8]}"
        self.tmux("new-session", "-d", "-s", "w", "-x", "80", "-y", "24", *command)

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args],  # type: ignore[list-item]
                              capture_output=True, text=True, check=check, timeout=10)  # fmt: skip

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "w").stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "w", *keys)

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", "w", check=False).returncode == 0

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline and self.alive():
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never shown; the screen:\n{screen}")

    def close(self) -> None:
        self.tmux("kill-server", check=False)


@pytest.fixture
def terminal(site: Path) -> Iterator[Terminal]:
    shown = Terminal([MQI, "--config", str(site), "watch"])
    try:
        yield shown
    finally:
        shown.close()


def test_watch_fits_80x24_follows_the_views_selects_a_case_and_quits_on_q(site, terminal):
    screen = terminal.wait_for("MQI watch")
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert "daemon: not running" in screen
    assert "running 1" in screen and "waiting 28" in screen and "failed 1" in screen
    assert "patient-000" in screen and "n1/gpu0" in screen and "9/18" in screen
    assert "gpu n1/gpu0 allocated patient-000" in screen and "host n1" in screen

    load_context(str(site)).ledger.detect_case(
        "patient-new", file_count=1, total_bytes=1, fingerprint="f", actor="daemon"
    )
    terminal.wait_for("waiting 29")  # within a refresh, read from the views

    for _ in range(30):  # down to the failed case: its output as its failure recorded it
        terminal.keys("Down")
        if "output of patient-001" in terminal.screen():
            break
        time.sleep(0.05)
    terminal.wait_for("CUDA error: out of memory")

    terminal.keys("q")
    deadline = time.monotonic() + 10
    while terminal.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not terminal.alive()  # the command ended, and with it the session
