"""One daemon per data folder: an advisory lock on a file under ``var/``.

The lock is an ``flock`` held for the daemon's lifetime, so it disappears with the
process however that ends (no stale lock after a crash). The file records who holds it,
for the message a second daemon prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from mqi_es.adapters.local.clock import utcnow
from mqi_es.core.errors import MqiError


class AlreadyRunning(MqiError):
    """Raised when another process holds the daemon lock of this data folder."""


@dataclass(frozen=True)
class Holder:
    pid: int
    user: str
    host: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} of {self.user}@{self.host}, since {self.since}"


class DaemonLock:
    """The lock file ``path``; ``acquire()`` holds it until ``release()`` or exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, user: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            who = holder.describe() if holder else "another process"
            raise AlreadyRunning(
                f"another mqi daemon already runs on this data folder ({who}); "
                f"lock file {self.path}"
            ) from None
        me = Holder(
            pid=os.getpid(),
            user=user,
            host=socket.gethostname(),
            since=utcnow().isoformat(timespec="seconds"),
        )
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me.__dict__).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def holder(self) -> Holder | None:
        """Who holds the lock now, or None if nobody does."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # held: read who holds it
            else:
                return None
            try:
                return Holder(**json.loads(os.read(fd, 4096) or b"{}"))
            except (ValueError, TypeError):
                return Holder(pid=0, user="?", host="?", since="?")
        finally:
            os.close(fd)
