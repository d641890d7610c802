"""The host keys a node is trusted by: its known_hosts file, always verified.

With ``trust_on_first_use`` an unknown key is recorded (appended and synced, logged at
WARNING with its fingerprint); a key that differs from a recorded one is never replaced.
Every refusal says what to check and which command fixes it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncssh

log = logging.getLogger(__name__)

Offered = tuple[str, str, int | None, asyncssh.SSHKey]  # host, address, port, key


class Misconfigured(Exception):
    """A setting that no retry can fix."""


class KnownHosts:
    """The known_hosts file of node ``name``."""

    def __init__(self, name: str, path: Path, *, trust_on_first_use: bool) -> None:
        self.name = name
        self.path = path.expanduser()
        self.trust_on_first_use = trust_on_first_use

    def ensure(self) -> None:
        """Refuse a missing or unreadable file (created empty only for trust on first use)."""
        if self.path.is_file():
            if not os.access(self.path, os.R_OK):
                raise Misconfigured(f"{self.name}: known_hosts file {self.path} is unreadable")
            return
        if not self.trust_on_first_use:
            raise Misconfigured(
                f"{self.name}: known_hosts file {self.path} does not exist: create it with "
                f"ssh-keyscan (then check the fingerprint), or set trust_on_first_use"
            )
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.touch(mode=0o600)

    def trust_new(self, offered: Offered) -> bool:
        """Record the key if the node has no entry yet and TOFU is on; never replace one."""
        host, addr, port, key = offered
        if not self.trust_on_first_use or self._lists(host, addr, port):
            return False
        key_type, key_data = key.export_public_key("openssh").decode().split()[:2]
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as known_hosts:
                known_hosts.write(f"{_pattern(host, port)} {key_type} {key_data}\n")
                known_hosts.flush()
                os.fsync(known_hosts.fileno())
        except OSError as exc:
            log.error("%s: cannot record the host key in %s: %s", self.name, self.path,
                exc.strerror)  # fmt: skip
            return False
        log.warning(
            "%s: trusting the host key of %s on first use: %s %s, recorded in %s",
            self.name,
            _pattern(host, port),
            key_type,
            key.get_fingerprint(),
            self.path,
        )
        return True

    def refusal(self, offered: Offered | None) -> str:
        """Why the key the node offered was refused, and how to fix it."""
        name, path = self.name, self.path
        if offered is None:
            return f"{name}: the host key could not be verified against {path}"
        host, addr, port, key = offered
        pattern, fingerprint = _pattern(host, port), key.get_fingerprint()
        if self._lists(host, addr, port):
            return (
                f"{name}: the host key of {pattern} ({fingerprint}) does NOT match the one in "
                f"{path}: the node was reinstalled, or someone is in between. Check the "
                f"fingerprint on the node, then replace the entry "
                f"(ssh-keygen -R '{pattern}' -f {path})"
            )
        scan = f"ssh-keyscan {f'-p {port} ' if port else ''}{host} >> {path}"
        return (
            f"{name}: the host key of {pattern} ({fingerprint}) is not in known_hosts {path}: "
            f"add it with `{scan}` after checking the fingerprint, or set trust_on_first_use"
        )

    def _lists(self, host: str, addr: str, port: int | None) -> bool:
        try:
            trusted, ca_keys, *_ = asyncssh.match_known_hosts(str(self.path), host, addr, port)
        except (OSError, ValueError):
            return False
        return bool(trusted or ca_keys)


def _pattern(host: str, port: int | None) -> str:
    return host if port in (None, 22) else f"[{host}]:{port}"
