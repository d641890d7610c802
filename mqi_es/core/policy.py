"""The lifecycle's settings as plain values, taken from the configuration once.

The decision core reads these instead of the configuration, so it imports nothing of the
configuration machinery (YAML, msgspec) and tests build them directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from mqi_es.core import backoff
from mqi_es.core.run_progress import MOQUI_PATTERN
from mqi_es.core.states import CaseState

# Defaults that fit MOQUI runs (alarms.stall_minutes): how long a case may stay in a state.
STALL_LIMITS: Mapping[CaseState, timedelta] = {
    CaseState.WAITING: timedelta(hours=24),
    CaseState.HELD: timedelta(hours=1),
    CaseState.SUBMITTING: timedelta(minutes=30),
    CaseState.QUEUED: timedelta(hours=1),
    CaseState.RETRIEVING: timedelta(hours=1),
}


@dataclass(frozen=True, slots=True)
class HostPolicy:
    name: str
    slots: tuple[str, ...]
    remote_base_dir: str


@dataclass(frozen=True, slots=True)
class Housekeeping:
    """What is removed on the nodes, and when (``housekeeping`` in the configuration)."""

    remove_finished_tasks: bool = True
    retention: timedelta = timedelta(hours=72)  # a case's folder, after the case ended
    failed_retention: timedelta = timedelta(hours=336)  # ... after it failed

    @property
    def shortest(self) -> timedelta:
        return min(self.retention, self.failed_retention)


@dataclass(frozen=True, slots=True)
class Policy:
    hosts: tuple[HostPolicy, ...] = ()
    timeout: timedelta = timedelta(hours=24)  # running time allowed, unless the case sets its own
    max_attempts: int = 3  # charged attempts (killed or lost by the infrastructure) before failing
    missing_grace: int = 3  # consecutive good snapshots without a task before it is lost
    retry_backoff: timedelta = timedelta(seconds=30)
    retry_backoff_cap: timedelta = timedelta(minutes=10)
    kill_confirm_timeout: timedelta = timedelta(minutes=2)
    kill_resend_interval: timedelta = timedelta(seconds=15)
    # How long after a submission was last possibly in flight its task may still appear:
    # the remote command timeout plus a margin. Only later does "not in the queue" count.
    submit_settle: timedelta = timedelta(seconds=40)
    # A wall clock that moved this much more (or less) than the monotonic clock between two
    # cycles jumped: no time-based kill or failure in that cycle. Same for a node's clock.
    clock_jump_tolerance: timedelta = timedelta(seconds=5)
    max_skew: timedelta = timedelta(seconds=60)  # a node's clock this far from ours: alarm
    stall_limits: Mapping[CaseState, timedelta] = field(default_factory=lambda: STALL_LIMITS)
    host_down: timedelta = timedelta(minutes=10)  # a host unusable this long: alarm
    cycle_overdue: timedelta = timedelta(minutes=5)  # cycles this far apart: alarm
    housekeeping: Housekeeping = Housekeeping()
    node_disk_reserve: int = 20 * 10**9  # bytes a node keeps free: no case sent below it
    # How often the progress of a host's running tasks is read (None: never), and the line
    # of their output that tells it.
    progress_interval: timedelta | None = timedelta(seconds=30)
    progress_pattern: re.Pattern[str] = re.compile(MOQUI_PATTERN)
    hosts_by_name: dict[str, HostPolicy] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hosts_by_name", {h.name: h for h in self.hosts})

    def backoff(self, charged_failures: int) -> timedelta:
        """Wait before the next attempt after ``charged_failures`` charged failures."""
        seconds = backoff.delay(
            max(1, charged_failures),
            base=self.retry_backoff.total_seconds(),
            cap=self.retry_backoff_cap.total_seconds(),
        )
        return timedelta(seconds=seconds)
