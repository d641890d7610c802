"""Where a node is and how to reach it (``SshTarget``, from a host's configuration), and
the states its connection goes through, for status views."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mqi_es.config import HostConfig


@dataclass(frozen=True, slots=True)
class SshTarget:
    """How to reach one node. Unset fields come from the OpenSSH client config.

    :param name: our name for the host (logs, states, messages)
    :param host: address or an alias of ``~/.ssh/config`` (HostName, Port, User and
        IdentityFile are applied as ``ssh`` would)
    :param key_file: the only key offered when set; else the config's IdentityFile,
        the default keys and the SSH agent
    :param known_hosts: host keys trusted for this node; always verified
    :param trust_on_first_use: record an unknown host key (WARNING with its fingerprint);
        a key that differs from a recorded one is still refused
    :param ssh_config: client config files; None means the user's ``~/.ssh/config``
    """

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0
    login_timeout: float = 10.0
    keepalive_interval: float = 5.0
    keepalive_count_max: int = 3
    command_timeout: float = 30.0
    backoff_cap: float = 60.0
    ssh_config: tuple[Path, ...] | None = None


@dataclass(frozen=True, slots=True)
class Idle:
    """Not connected yet, or closed; the next command connects."""


@dataclass(frozen=True, slots=True)
class Connected:
    since: datetime
    cipher: str


@dataclass(frozen=True, slots=True)
class Reconnecting:
    last_error: str
    failures: int


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    message: str


ConnectionState = Idle | Connected | Reconnecting | ConfigProblem


def ssh_target(host: HostConfig) -> SshTarget:
    """How to reach ``host``; settings it does not name come from the user's ssh config."""
    return SshTarget(
        name=host.name,
        host=host.host,
        port=host.port,
        user=host.user,
        key_file=host.key_file,
        known_hosts=host.known_hosts,
        trust_on_first_use=host.trust_on_first_use,
        connect_timeout=host.connect_timeout_seconds,
        login_timeout=host.connect_timeout_seconds,
        keepalive_interval=host.keepalive_interval_seconds,
        command_timeout=host.command_timeout_seconds,
        backoff_cap=host.reconnect_backoff_cap_seconds,
    )
