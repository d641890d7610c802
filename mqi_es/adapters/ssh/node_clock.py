"""The node's clock, read in the same round trip as a status query (every backend's).

The first line of a poll's output is ``mqi-clock <seconds>.<nanoseconds>`` (``date -u``),
so the node's skew is measured within half the round trip, and remote durations can be
computed on the node's clock alone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from mqi_es.core.shell import quote

CLOCK_MARK = "mqi-clock "  # the line a poll's output starts with: the node's clock
CLOCK_COMMAND = "date -u " + quote(f"+{CLOCK_MARK}%s.%N")


def node_time(text: str) -> datetime | None:
    """``date -u +%s.%N`` as a time; a ``date`` without ``%N`` (busybox) gives seconds."""
    seconds, _, fraction = text.strip().partition(".")
    if not re.fullmatch(r"[0-9]{1,12}", seconds, re.ASCII):
        return None
    moment = datetime.fromtimestamp(int(seconds), UTC)
    if re.fullmatch(r"[0-9]{1,9}", fraction, re.ASCII):
        moment += timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return moment


def skew(node: datetime | None, sent_at: datetime, rtt: float) -> float | None:
    """The node's clock minus ours, in seconds (within ``rtt`` / 2): its answer was written
    about half a round trip after the query left, by our clock, at ``sent_at``."""
    if node is None:
        return None
    return (node - (sent_at + timedelta(seconds=rtt / 2))).total_seconds()
