"""One reconcile cycle's working state: what it was given, what it decided so far, and the
bookkeeping every rule shares (records, actions, kills resent at most once per interval,
both clocks followed from cycle to cycle, and alarms: raised when their condition starts,
cleared when it has ended). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mqi_es.core.actions import Action, Cancel, Decision, Memory
from mqi_es.core.commands import ClearAlarm, Command, RaiseAlarm
from mqi_es.core.endings import failure, infrastructure_loss
from mqi_es.core.policy import Policy
from mqi_es.core.remote import Observation, RemoteTask, Seen
from mqi_es.core.states import STICKY_ALARMS, AlarmKind, CaseState, FailureCategory, SlotState
from mqi_es.core.views import AlarmView, CaseView, HostView, Leftover, SlotView

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
    alarms: Sequence[AlarmView] = ()  # every alarm not cleared
    # per case: why its results could not be written here at its last fetch
    unwritable: Mapping[str, str] = field(default_factory=dict)
    # housekeeping: ended cases' folders still on the nodes (those ended long enough ago),
    # and the registered cases among those our ended tasks' labels name
    leftovers: Sequence[Leftover] = ()
    registered: frozenset[str] = frozenset()
    # per host: bytes free where its cases go, as last read (before an upload, or by the
    # periodic check)
    disk_free: Mapping[str, int] = field(default_factory=dict)


class Cycle:
    def __init__(self, world: World, now: datetime, policy: Policy, memory: Memory) -> None:
        self.world, self.now, self.policy = world, now, policy
        self.mono = world.mono
        self.records: list[Command] = []
        self.actions: list[Action] = []
        self.memory = memory
        self.missing = dict(memory.missing)
        self.kill_sent = dict(memory.kill_sent)
        self.killing_since = dict(memory.killing_since)
        self.running_since = dict(memory.running_since)
        self.node_clocks = dict(memory.node_clocks)
        self.progress_read = dict(memory.progress_read)
        self.raised: dict[str, RaiseAlarm] = {}  # conditions seen this cycle, by key
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
        memory = Memory(
            missing={key: n for key, n in self.missing.items() if key in live},
            kill_sent={key: at for key, at in self.kill_sent.items() if key in may_kill},
            killing_since={k: at for k, at in self.killing_since.items() if k in killing},
            running_since={k: at for k, at in self.running_since.items() if k in live},
            node_clocks=self.node_clocks,
            clock=(self.now, self.mono),
            progress_read=self.progress_read,
        )
        actions = tuple(dict.fromkeys(self.actions))  # e.g. one release per held slot
        return Decision((*self.records, *self._alarm_records()), actions, memory)

    def _alarm_records(self) -> list[Command]:
        """Raise the alarms whose condition started; clear those whose condition ended (an
        alarm about a host that was not seen this cycle stays: nobody can tell)."""
        standing = {alarm.key: alarm for alarm in self.world.alarms}
        records: list[Command] = [r for key, r in self.raised.items() if key not in standing]
        for alarm in self.world.alarms:
            ended = alarm.key not in self.raised and alarm.kind not in STICKY_ALARMS
            if ended and (alarm.host is None or alarm.host in self.seen):
                records.append(ClearAlarm(alarm_id=alarm.alarm_id, reason="its condition ended"))
        return records

    # --- what the rules ask for --------------------------------------------------------

    def record(self, command: Command) -> None:
        self.records.append(command)

    def alarm(
        self,
        kind: AlarmKind,
        message: str,
        *,
        key: str,
        case: CaseView | None = None,
        host: str | None = None,
        subject: str | None = None,
        from_views: bool = False,
    ) -> None:
        """The condition ``key`` holds in this cycle: raised unless it stands already.
        ``host``: the host whose sight tells whether it lasts (by default the case's);
        ``from_views``: none, the views tell it every cycle."""
        if subject is None:
            subject = f"case {case.case_id}" if case else f"host {host}" if host else "daemon"
        self.raised[key] = RaiseAlarm(
            key=key, kind=kind, subject=subject, message=message, raised_at=self.now,
            about_case=case.case_id if case else None,
            host=None if from_views else host if host is not None else case.host if case else None,
        )  # fmt: skip

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
                AlarmKind.CLOCK_JUMP,
                f"the clock of host {host} jumped by {offset - last[0]:+.0f} s; no case there "
                "is killed or failed for its timing in this cycle",
                key=f"node-clock-jump:{host}:{self.now.isoformat()}",
                host=host,
            )
        if seen.skew is not None and abs(seen.skew) > self.policy.max_skew.total_seconds():
            self.alarm(
                AlarmKind.CLOCK_SKEW,
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
            AlarmKind.CLOCK_JUMP,
            f"this machine's clock jumped by {jump:+.0f} s; no case is killed or failed for "
            "its timing in this cycle",
            key=f"clock-jump:{self.now.isoformat()}",
        )
        return True
