"""What the daemon saw of each host this cycle: a snapshot, or nothing it can trust.

``Seen`` is a fact about the node. ``Unseen`` is only a fact about our view of it, and says
what was actually seen: the node could not be reached, its queue service did not answer,
its answer could not be read, its queue software cannot be used safely, or no answer came
yet this cycle. The decision core never changes a case because of it (an incompatible
node excepted: that is a definite answer, see ``mqi_es.core.reconcile``).

Times: ``taken_at`` is on this process's monotonic clock (local waits are measured on it,
so a jump of the wall clock cannot shorten or stretch them); ``node_time`` is the node's
own clock, read in the same round trip as the snapshot, so remote durations are computed
on the node's clock alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from mqi_es.core.snapshot import StatusSnapshot
from mqi_es.core.states import HostState


@dataclass(frozen=True, slots=True)
class Seen:
    snapshot: StatusSnapshot
    taken_at: float  # monotonic seconds when the status query was sent
    node_time: datetime | None = None  # the node's clock when it answered (None: not read)
    skew: float | None = None  # the node's clock minus ours, seconds (within rtt / 2)
    rtt: float = 0.0  # seconds between sending the query and reading its answer


class Blindness(StrEnum):
    """Why a host was not seen."""

    UNREACHABLE = "unreachable"  # refused, timed out, connection lost, no route
    QUEUE_DOWN = "queue_down"  # the node answered; its queue service did not
    UNREADABLE = "unreadable"  # an answer we cannot read (garbage, truncated, unknown shape)
    INCOMPATIBLE = "incompatible"  # the queue software cannot be used safely (e.g. too old)
    PENDING = "pending"  # no answer yet this cycle: the query is still under way
    FAULT = "fault"  # our own adapter failed (a bug): logged with its traceback
    NOT_POLLED = "not_polled"  # not asked yet


# What each kind says about the host itself; the others say nothing about it.
_HOST_STATE = {
    Blindness.UNREACHABLE: HostState.UNREACHABLE,
    Blindness.QUEUE_DOWN: HostState.QUEUE_DOWN,
    Blindness.UNREADABLE: HostState.UNREADABLE,
    Blindness.INCOMPATIBLE: HostState.INCOMPATIBLE,
}


@dataclass(frozen=True, slots=True)
class Unseen:
    reason: str
    kind: Blindness = Blindness.UNREACHABLE

    @property
    def host_state(self) -> HostState | None:
        """The host state this shows, or None when it says nothing about the host."""
        return _HOST_STATE.get(self.kind)


Observation = Seen | Unseen

NOT_POLLED = Unseen("not polled yet", Blindness.NOT_POLLED)
