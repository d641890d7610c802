"""The Host aggregate: a GPU node's reachability, recorded at transitions only.

An outage produces exactly two events, ``BecameUnreachable`` when it starts and
``BecameReachable`` (with its duration) when it ends, whatever the number of polls.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from mqi_es.domain.recorded import Recorded
from mqi_es.ids import host_uuid
from mqi_es.states import HostState


class Host(Recorded):
    @staticmethod
    def create_id(name: str) -> UUID:
        return host_uuid(name)

    class Registered(Recorded.Created):
        name: str
        address: str

    @event(Registered)
    def __init__(self, name: str, address: str, actor: str, reason: str = "") -> None:
        self.name = name
        self.address = address
        self.state = HostState.UNKNOWN
        self.unreachable_since: datetime | None = None

    class BecameUnreachable(Recorded.Event):
        since: datetime

    def record_unreachable(self, *, since: datetime, actor: str, reason: str) -> bool:
        """Record the start of an outage; returns False (and records nothing) during one."""
        if self.state is HostState.UNREACHABLE:
            return False
        self._unreachable(since=since, actor=actor, reason=reason)
        return True

    @event(BecameUnreachable)
    def _unreachable(self, since: datetime, actor: str, reason: str) -> None:
        self.state = HostState.UNREACHABLE
        self.unreachable_since = since

    class BecameReachable(Recorded.Event):
        outage_seconds: float | None

    def record_reachable(self, *, at: datetime, actor: str, reason: str = "") -> bool:
        """Record the end of an outage (or the first contact); False if nothing changed."""
        if self.state is HostState.REACHABLE:
            return False
        outage = (
            (at - self.unreachable_since).total_seconds()
            if self.unreachable_since is not None
            else None
        )
        self._reachable(outage_seconds=outage, actor=actor, reason=reason)
        return True

    @event(BecameReachable)
    def _reachable(self, outage_seconds: float | None, actor: str, reason: str) -> None:
        self.state = HostState.REACHABLE
        self.unreachable_since = None
