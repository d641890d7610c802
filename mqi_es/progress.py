"""Transfers in flight, shared by the daemon with `mqi status` through a small file.

The daemon rewrites ``var/transfers.json`` (atomically, owner-only, at most a few times a
second) while uploads and downloads run; `mqi status` shows it. It is a window on the
daemon's memory, not a record: nothing in it is an event, and a stale file after a crash
is recognised by its pid.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_MIN_INTERVAL_SECONDS = 0.5


def transfers_file(event_log: Path) -> Path:
    """Where the daemon of the event log at ``event_log`` shows its transfers."""
    return event_log.parent / "transfers.json"


@dataclass(frozen=True, slots=True)
class Transfer:
    case_id: str
    direction: str  # "upload" or "download"
    done: int
    total: int


class ProgressBoard:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._transfers: dict[str, Transfer] = {}
        self._written_at = 0.0

    def update(self, transfer: Transfer) -> None:
        self._transfers[transfer.case_id] = transfer
        if time.monotonic() - self._written_at >= _MIN_INTERVAL_SECONDS:
            self._write()

    def finish(self, case_id: str) -> None:
        if self._transfers.pop(case_id, None) is not None:
            self._write()

    def _write(self) -> None:
        self._written_at = time.monotonic()
        data = {"pid": os.getpid(), "transfers": [asdict(t) for t in self._transfers.values()]}
        staging = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        staging.replace(self.path)


def read_transfers(path: Path, daemon_pid: int | None) -> list[Transfer]:
    """What the running daemon (``daemon_pid``) is transferring now; nothing if none runs."""
    if daemon_pid is None:
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if data.get("pid") != daemon_pid:
        return []  # left behind by a daemon that is gone
    return [Transfer(**t) for t in data.get("transfers", [])]
