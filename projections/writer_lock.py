"""One writer of the views at a time: the daemon for as long as it runs, otherwise the one
command bringing them up to date. Without it, a command that found no daemon running could
still be writing (or swapping in a rebuilt file) when a daemon starts, and the daemon would
write views nobody reads. A lock file beside the views link, ``flock``-ed."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from mqi_es.core.errors import MqiError

WAIT_SECONDS = 300.0  # the longest a writer waits for another (a rebuild of a large log)


class ViewsBusy(MqiError):
    """Raised when another process kept writing the views for longer than a writer waits."""


class WriterLock:
    def __init__(self, link: Path) -> None:
        self.path = link.with_name(f"{link.name}.writer")
        self._fd: int | None = None

    def acquire(self, *, wait: bool) -> bool:
        """Hold it; ``wait``: until the other writer is done (``ViewsBusy`` after
        WAIT_SECONDS), else give up at once. Whether it is held now."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait or time.monotonic() > deadline:
                    os.close(fd)
                    if wait:
                        raise ViewsBusy(
                            f"another process keeps writing the views ({self.path})"
                        ) from None
                    return False
                time.sleep(0.05)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
