"""The one registry of backends: a host's ``backend`` key picks its adapter.

Each backend gives the daemon an adapter for a host entry (an implementation of
``mqi_es.app.ports.RemoteHost``, checked structurally where the composition root uses it)
and the names of that host's slots: a pueue node's groups (one per GPU), or a Slurm
cluster's ``slurm.slots`` jobs at once. A new backend is one adapter and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mqi_es.adapters.pueue.host import PueueHost
from mqi_es.adapters.slurm.host import SlurmHost, slurm_slots
from mqi_es.config import HostConfig
from mqi_es.core.errors import ConfigError

Adapter = PueueHost | SlurmHost  # every backend's host type, one per backend


@dataclass(frozen=True, slots=True)
class Backend:
    # (host, result globs, the running time our own kill allows, in hours)
    connect: Callable[[HostConfig, tuple[str, ...], float], Adapter]
    slots: Callable[[HostConfig], tuple[str, ...]]


BACKENDS: dict[str, Backend] = {
    "pueue": Backend(
        connect=lambda host, globs, _: PueueHost.from_config(host, results_globs=globs),
        slots=lambda host: host.groups,  # one pueue group per GPU
    ),
    "slurm": Backend(
        connect=lambda host, globs, hours: SlurmHost.from_config(
            host, results_globs=globs, timeout_hours=hours
        ),
        slots=lambda host: slurm_slots(host.slurm) if host.slurm else (),
    ),
}


def backend_of(host: HostConfig) -> Backend:
    """:raises ConfigError: no backend of that name."""
    try:
        return BACKENDS[host.backend]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"host {host.name}: unknown backend {host.backend!r} ({known})") from None


def remote_host(
    host: HostConfig, *, results_globs: tuple[str, ...], timeout_hours: float
) -> Adapter:
    """The adapter of ``host``, with a connection of its own (opened by its first call)."""
    return backend_of(host).connect(host, results_globs, timeout_hours)


def slots_of(host: HostConfig) -> tuple[str, ...]:
    """The names of ``host``'s slots, as its backend sees them."""
    return backend_of(host).slots(host)
