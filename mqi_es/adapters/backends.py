"""The one registry of backends: a host's ``backend`` key picks its adapter.

Each backend gives the daemon an adapter for a host entry (an implementation of
``mqi_es.app.ports.RemoteHost``, checked structurally where the composition root uses it)
and the names of that host's slots. A new backend (a Slurm cluster) is one adapter and
one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mqi_es.adapters.pueue.host import PueueHost
from mqi_es.config import HostConfig
from mqi_es.core.errors import ConfigError

Adapter = PueueHost  # every backend's host type, one per backend


@dataclass(frozen=True, slots=True)
class Backend:
    connect: Callable[[HostConfig, tuple[str, ...]], Adapter]  # (host, result globs)
    slots: Callable[[HostConfig], tuple[str, ...]]


BACKENDS: dict[str, Backend] = {
    "pueue": Backend(
        connect=lambda host, globs: PueueHost.from_config(host, results_globs=globs),
        slots=lambda host: host.groups,  # one pueue group per GPU
    ),
}


def backend_of(host: HostConfig) -> Backend:
    """:raises ConfigError: no backend of that name."""
    try:
        return BACKENDS[host.backend]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"host {host.name}: unknown backend {host.backend!r} ({known})") from None


def remote_host(host: HostConfig, *, results_globs: tuple[str, ...]) -> Adapter:
    """The adapter of ``host``, with a connection of its own (opened by its first call)."""
    return backend_of(host).connect(host, results_globs)


def slots_of(host: HostConfig) -> tuple[str, ...]:
    """The names of ``host``'s slots, as its backend sees them."""
    return backend_of(host).slots(host)
