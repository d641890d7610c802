"""Telling systemd the daemon is alive (``sd_notify``), in a few lines of stdlib.

Under ``Type=notify`` systemd gives the service ``$NOTIFY_SOCKET``, an AF_UNIX datagram
socket (a path, or ``@name`` in the abstract namespace). ``READY=1`` once the first cycle
completed; ``WATCHDOG=1`` after each healthy cycle: with ``WatchdogSec=`` set, a daemon
whose loop is stuck stops sending it and is restarted. Without the variable (run by hand,
in tests) nothing is sent. A message that cannot be sent is logged once, never raised.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("mqi.daemon")


class Systemd:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket's name starts with a NUL byte; systemd writes it as "@".
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.ready = False
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def cycle_completed(self, status: str) -> None:
        """A healthy cycle: READY the first time, WATCHDOG every time, and a status line
        (`systemctl status mqi` shows it)."""
        first = "" if self.ready else "READY=1\n"
        if self._send(f"{first}WATCHDOG=1\nSTATUS={status}\n"):
            self.ready = True

    def stopping(self) -> None:
        self._send("STOPPING=1\n")

    def _send(self, message: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as exc:
            if not self._failed:
                log.warning("cannot tell systemd we are alive (%s): %s", self.address, exc)
            self._failed = True
            return False
        self._failed = False
        return True
