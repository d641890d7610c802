"""Driving a real `mqi run` process against a sandbox node, with bounded waits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MQI = str(Path(sys.executable).with_name("mqi"))


class DaemonProcess:
    """`mqi --config CONFIG run` in its own process; stopped with SIGTERM."""

    def __init__(
        self, config: Path, *, failpoint: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        given = env or {}
        env = {k: v for k, v in os.environ.items() if k not in ("MQI_FAILPOINT", "NOTIFY_SOCKET")}
        env.update(given)
        if failpoint:
            env["MQI_FAILPOINT"] = failpoint
        self.log = config.parent / f"daemon-{time.monotonic_ns()}.out"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            [MQI, "--config", str(config), "run"], stdout=self._out, stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log = self.output()
            raise AssertionError(f"daemon still running after {timeout} s; log:\n{log}") from None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            code = self.wait(30)
        else:
            code = self.process.returncode
        self._out.close()
        return code

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")


def notify_listener(path: Path) -> socket.socket:
    """A socket at ``path`` that hears what a daemon tells systemd (its NOTIFY_SOCKET)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(30)
    return listener


def mqi_json(config: Path, *args: str) -> Any:
    done = subprocess.run(
        [MQI, "--config", str(config), *args, "--json"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    ok = (0, 3, 4) if args[:1] == ("status",) else (0,)  # status: 3 an alarm, 4 overdue
    assert done.returncode in ok, done.stderr
    return json.loads(done.stdout)


def cases(config: Path) -> dict[str, dict[str, Any]]:
    return {c["case_id"]: c for c in mqi_json(config, "cases")}


def wait_for(probe, *, timeout: float, daemon: DaemonProcess | None = None, interval=0.25):
    """Poll ``probe`` until it returns something truthy, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if daemon is not None and daemon.process.poll() is not None:
            raise AssertionError(f"daemon exited ({daemon.process.returncode}):\n{daemon.output()}")
        if time.monotonic() > deadline:
            log = daemon.output() if daemon else ""
            raise AssertionError(f"not reached within {timeout} s: {probe}\n{log[-6000:]}")
        time.sleep(interval)


def all_ended(config: Path, names: list[str]):
    def probe():
        found = cases(config)
        if all(n in found and found[n]["state"] in ("completed", "failed") for n in names):
            return found
        return None

    return probe


def remote_labels(node) -> list[str]:
    """The label of every task the node's pueue knows."""
    return [t["label"] for t in node.status()["tasks"].values()]
