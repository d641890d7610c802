"""One reconcile cycle's working state: what it was given, what it decided so far, and the
bookkeeping every rule shares (records, actions, alarms raised once, kills resent at most
once per interval, and both clocks followed from cycle to cycle). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mqi_es.core.actions import Action, Alarm, Cancel, Decision, Memory
from mqi_es.core.commands import Command
from mqi_es.core.endings import failure, infrastructure_loss
from mqi_es.core.policy import Policy
from mqi_es.core.remote import Observation, RemoteTask, Seen
from mqi_es.core.states import CaseState, FailureCategory, SlotState
from mqi_es.core.views import CaseView, HostView, SlotView

ACTIVE = frozenset({CaseState.QUEUED, CaseState.RUNNING, CaseState.KILLING})


@dataclass(frozen=True)
class World:
    """Everything the core may look at in one cycle."""

    cases: Sequence[CaseView]  # every case that is not terminal
    slots: Sequence[SlotView]
    hosts: Sequence[HostView]
    observations: Mapping[str, Observation]
    started_at: float  # when this daemon process started (monotonic seconds)
    mono: float = 0.0  # the monotonic clock now (seconds)
    busy: frozenset[str] = frozenset()  # cases with remote work in flight
    # per case: a "not in the queue" only counts in snapshots taken after this (monotonic)
    settled_at: Mapping[str, float] = field(default_factory=dict)


class Cycle:
    def __init__(self, world: World, now: datetime, policy: Policy, memory: Memory) -> None:
        self.world, self.now, self.policy = world, now, policy
        self.mono = world.mono
        self.records: list[Command] = []
        self.actions: list[Action] = []
        self.alarms: list[Alarm] = []
        self.memory = memory
        self.missing = dict(memory.missing)
        self.kill_sent = dict(memory.kill_sent)
        self.killing_since = dict(memory.killing_since)
        self.running_since = dict(memory.running_since)
        self.node_clocks = dict(memory.node_clocks)
        self.raised: dict[str, str | None] = {}
        self.seen: dict[str, Seen] = {}
        self.incompatible: dict[str, str] = {}  # host -> why its queue cannot be used
        self.ours: dict[str, set[str]] = {}  # host -> labels of our live attempts
        self.taken: set[tuple[str, str]] = set()  # slots not to hand out this cycle
        # Hosts whose timing cannot be trusted this cycle (a clock jumped): no kill or
        # failure there for a timeout or an unconfirmed kill.
        self.clock_unsafe: set[str] = set()
        # per host whose clock jumped this cycle: its offset before the jump
        self.offset_before_jump: dict[str, float] = {}
        self.clock_jumped = self._local_clock_jumped()

    def decision(self) -> Decision:
        active = [c for c in self.world.cases if c.state in ACTIVE]
        live = {(c.case_id, c.attempt) for c in active}
        may_kill = {f"{c.case_id}#{c.attempt}" for c in active}
        may_kill |= {f"slot:{s.key}" for s in self.world.slots if s.state is SlotState.QUARANTINED}
        killing = {(c.case_id, c.attempt) for c in active if c.state is CaseState.KILLING}
        alarms = {
            key: host
            for key, host in self.memory.alarms.items()
            if host is not None and host not in self.seen  # unseen: cannot tell if it ended
        }
        alarms.update(self.raised)
        memory = Memory(
            missing={key: n for key, n in self.missing.items() if key in live},
            kill_sent={key: at for key, at in self.kill_sent.items() if key in may_kill},
            killing_since={k: at for k, at in self.killing_since.items() if k in killing},
            running_since={k: at for k, at in self.running_since.items() if k in live},
            node_clocks=self.node_clocks,
            clock=(self.now, self.mono),
            alarms=alarms,
        )
        actions = tuple(dict.fromkeys(self.actions))  # e.g. one release per held slot
        return Decision(tuple(self.records), actions, tuple(self.alarms), memory)

    # --- what the rules ask for --------------------------------------------------------

    def record(self, command: Command) -> None:
        self.records.append(command)

    def alarm(
        self,
        message: str,
        case: CaseView | None = None,
        *,
        key: str | None = None,
        host: str | None = None,
    ) -> None:
        """Raise an alarm unless it is raised already (``key``, by default its message)."""
        key = key or message
        self.raised[key] = host if host is not None else (case.host if case else None)
        if key not in self.memory.alarms:
            self.alarms.append(Alarm(message, case.case_id if case else None, key))

    def send_kill(self, key: str, host: str, task: RemoteTask, case_id: str | None) -> None:
        """Ask for a kill, at most once per ``kill_resend_interval`` for the same ``key``."""
        last = self.kill_sent.get(key)
        if last is not None and self.mono - last < self.policy.kill_resend_interval.total_seconds():
            return
        self.kill_sent[key] = self.mono
        self.actions.append(Cancel(host, task, case_id))

    def fail(
        self,
        case: CaseView,
        category: FailureCategory,
        reason: str,
        *,
        quarantine_task_id: int | None = None,
    ) -> None:
        self.records.append(failure(case, category, reason, quarantine_task_id))

    def lose(self, case: CaseView, reason: str) -> None:
        """The infrastructure lost this attempt (see ``infrastructure_loss``)."""
        self.records.append(infrastructure_loss(case, reason, self.now, self.policy))

    # --- clocks ------------------------------------------------------------------------

    def timing_unsafe(self, host: str | None) -> bool:
        return self.clock_jumped or host in self.clock_unsafe

    def follow_node_clock(self, host: str, seen: Seen) -> None:
        """Follow the node's clock: alarm on a large skew; a jump makes its timing unsafe."""
        if seen.node_time is None:
            return
        offset = seen.node_time.timestamp() - (seen.taken_at + seen.rtt / 2)
        uncertainty = seen.rtt / 2
        last = self.node_clocks.get(host)
        self.node_clocks[host] = (offset, uncertainty)
        tolerance = self.policy.clock_jump_tolerance.total_seconds()
        if last is not None and abs(offset - last[0]) > tolerance + uncertainty + last[1]:
            self.clock_unsafe.add(host)
            self.offset_before_jump[host] = last[0]
            self.alarm(
                f"the clock of host {host} jumped by {offset - last[0]:+.0f} s; no case there "
                "is killed or failed for its timing in this cycle",
                key=f"node-clock-jump:{host}",
                host=host,
            )
        if seen.skew is not None and abs(seen.skew) > self.policy.max_skew.total_seconds():
            self.alarm(
                f"the clock of host {host} is {seen.skew:+.1f} s off this machine's (more than "
                f"{self.policy.max_skew.total_seconds():g} s): fix the time service (NTP) there "
                "or here",
                key=f"skew:{host}",
                host=host,
            )

    def _local_clock_jumped(self) -> bool:
        last = self.memory.clock
        if last is None:
            return False
        wall = (self.now - last[0]).total_seconds()
        jump = wall - (self.mono - last[1])
        if abs(jump) <= self.policy.clock_jump_tolerance.total_seconds():
            return False
        self.alarm(
            f"this machine's clock jumped by {jump:+.0f} s; no case is killed or failed for "
            "its timing in this cycle",
            key="clock-jump",
        )
        return True
