"""The Host aggregate: what the status queries of a GPU node showed, recorded at changes only.

An outage produces one ``BecameUnavailable`` when it starts, one more each time what is seen
changes (the node unreachable, then reached but its queue service down, ...), and one
``BecameReachable`` (with the outage's duration) when it ends, whatever the number of polls.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from mqi_es.core.ids import host_uuid
from mqi_es.core.states import HostState
from mqi_es.domain.recorded import Recorded


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

    class BecameUnavailable(Recorded.Event):
        state: str  # a HostState other than unknown and reachable
        since: datetime  # when the outage began (kept while only its kind changes)

    def record_unavailable(
        self, *, state: HostState, since: datetime, actor: str, reason: str
    ) -> bool:
        """Record what a failed poll showed; returns False (and records nothing) when it
        shows what the last one showed."""
        if state in (HostState.UNKNOWN, HostState.REACHABLE):
            raise ValueError(f"{state} is not an unavailable state")
        if self.state is state:
            return False
        self._unavailable(
            state=state.value, since=self.unreachable_since or since, actor=actor, reason=reason
        )
        return True

    @event(BecameUnavailable)
    def _unavailable(self, state: str, since: datetime, actor: str, reason: str) -> None:
        self.state = HostState(state)
        self.unreachable_since = since

    class BecameUnreachable(Recorded.Event):
        """Recorded by releases before ``BecameUnavailable`` existed; read, never written."""

        since: datetime

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
