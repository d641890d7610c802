"""What the daemon saw of each host this cycle: a snapshot, or nothing it can trust.

``Seen`` is a fact about the node. ``Unseen`` (unreachable, timed out, the queue daemon down,
output that could not be parsed) is only a fact about our view of it: the decision core
never changes a case because of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mqi_es.snapshot import StatusSnapshot


@dataclass(frozen=True, slots=True)
class Seen:
    snapshot: StatusSnapshot
    taken_at: datetime  # when the status query was sent (our clock)


@dataclass(frozen=True, slots=True)
class Unseen:
    reason: str


Observation = Seen | Unseen

NOT_POLLED = Unseen("not polled yet")
