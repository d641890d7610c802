"""The decision core: from what is recorded and what is seen, what to record and do next.

``reconcile`` is a pure function of the views, this cycle's observations of each host, the
time and the policy. It reads no clock, does no I/O and draws no random numbers, so every
rule of the lifecycle can be tested exhaustively. It is level-triggered: it looks at the
whole state every cycle and asks for what is missing, so running it twice on the same
input asks for the same things, and a crash anywhere is recovered by the next run.

Rules, per case (only on a host seen this cycle: an unseen host changes nothing):

- submitting: its task found by label -> record it as enqueued (this adopts the task
  after a crash too). Not found in a snapshot taken after any submission could still
  land -> it never reached the queue -> abandon the attempt (uncharged); the next cycle
  submits a new attempt. Never a second task for one attempt.
- queued/running/killing: the task is identified by label and ``created_at`` (ids are
  reused after ``clean``). Running -> record the start; over its timeout -> kill.
  Done/success -> remote success, then fetch. Failed / failed to spawn -> fail with
  the log's tail. Killed when we asked -> timeout or cancelled; killed when we did not
  (the queue service restarted), lost -> infrastructure: a new attempt with backoff, until
  ``max_attempts``. Missing for ``missing_grace`` good snapshots -> lost, the same way.
  A kill not confirmed within ``kill_confirm_timeout`` -> fail and quarantine the slot.
- Free slots go to waiting cases in arrival order; a slot running tasks we did not
  submit is busy, not free; a held task of ours (its slot's queue paused) is released.
- A host whose queue software cannot be used (``incompatible``) gets no case, and a case
  whose attempt started there goes back to waiting with that reason (no task can exist:
  the adapter never submits to such a node).

Time: a task's running time is measured on the node's clock (its start and the node's
time, read in the same round trip), carried over once onto our monotonic clock; local
waits (kill confirmation, kill resends, the submit settle window) are monotonic. In a cycle
where our wall clock jumped, or a node's clock did, nothing is killed or failed for its
timing. Alarms are raised once while their condition lasts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mqi_es.core.actions import (
    Action,
    Alarm,
    Cancel,
    Decision,
    FailWithLog,
    Fetch,
    Memory,
    Release,
    Submit,
)
from mqi_es.core.commands import (
    AbandonAttempt,
    Command,
    FailCase,
    LiftQuarantine,
    MarkSlotBusy,
    MarkSlotFree,
    RecordEnqueued,
    RecordHostReachable,
    RecordHostUnavailable,
    RecordRemoteSuccess,
    RecordStarted,
    RequestKill,
)
from mqi_es.core.ids import TASK_LABEL_PREFIX
from mqi_es.core.policy import Policy
from mqi_es.core.remote import (
    NOT_POLLED,
    STARTED,
    WAITING,
    Blindness,
    Found,
    Observation,
    RemoteTask,
    Seen,
    StatusSnapshot,
    Unseen,
    find_task_by_label,
)
from mqi_es.core.states import CaseState, FailureCategory, HostState, KillCause, SlotState
from mqi_es.core.views import CaseView, HostView, SlotView

_ACTIVE = frozenset({CaseState.QUEUED, CaseState.RUNNING, CaseState.KILLING})
_KILL_OUTCOME = {
    KillCause.TIMEOUT: FailureCategory.TIMEOUT,
    KillCause.CANCEL: FailureCategory.CANCELLED,
}


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


def reconcile(world: World, now: datetime, policy: Policy, memory: Memory) -> Decision:
    """Decide this cycle's records and actions. Pure: same input, same decision."""
    cycle = _Cycle(world, now, policy, memory)
    cycle.hosts()
    cycle.cases()
    cycle.slots()
    cycle.allocate()
    return cycle.decision()


class _Cycle:
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
        active = [c for c in self.world.cases if c.state in _ACTIVE]
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

    # --- clocks ------------------------------------------------------------------------

    def _local_clock_jumped(self) -> bool:
        last = self.memory.clock
        if last is None:
            return False
        wall = (self.now - last[0]).total_seconds()
        jump = wall - (self.mono - last[1])
        if abs(jump) <= self.policy.clock_jump_tolerance.total_seconds():
            return False
        self._alarm(
            f"this machine's clock jumped by {jump:+.0f} s; no case is killed or failed for "
            "its timing in this cycle",
            key="clock-jump",
        )
        return True

    def _node_clock(self, host: str, seen: Seen) -> None:
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
            self._alarm(
                f"the clock of host {host} jumped by {offset - last[0]:+.0f} s; no case there "
                "is killed or failed for its timing in this cycle",
                key=f"node-clock-jump:{host}",
                host=host,
            )
        if seen.skew is not None and abs(seen.skew) > self.policy.max_skew.total_seconds():
            self._alarm(
                f"the clock of host {host} is {seen.skew:+.1f} s off this machine's (more than "
                f"{self.policy.max_skew.total_seconds():g} s): fix the time service (NTP) there "
                "or here",
                key=f"skew:{host}",
                host=host,
            )

    def _timing_unsafe(self, host: str | None) -> bool:
        return self.clock_jumped or host in self.clock_unsafe

    # --- hosts: what was seen, recorded at changes only --------------------------------

    def hosts(self) -> None:
        views = {h.name: h for h in self.world.hosts}
        for host in self.policy.hosts:
            seen = self.world.observations.get(host.name, NOT_POLLED)
            view = views.get(host.name)
            if isinstance(seen, Unseen):
                self._unseen(host.name, view, seen)
                continue
            self.seen[host.name] = seen
            self._node_clock(host.name, seen)
            if view is not None and view.state is not HostState.REACHABLE:
                self._record(RecordHostReachable(name=host.name, at=self.now))
        for case in self.world.cases:
            if case.label is not None and case.host is not None:
                self.ours.setdefault(case.host, set()).add(case.label)

    def _unseen(self, name: str, view: HostView | None, seen: Unseen) -> None:
        state = seen.host_state
        if state is None:
            return  # no answer yet, or our own fault: nothing is known about the node
        if view is not None and view.state is not state:
            self._record(RecordHostUnavailable(name=name, state=state, since=self.now,
                reason=seen.reason,
            ))  # fmt: skip
        if seen.kind is Blindness.INCOMPATIBLE:
            self.incompatible[name] = seen.reason
            self._alarm(f"host {name} cannot be used: {seen.reason}", key=f"incompatible:{name}")

    # --- cases with an attempt under way ------------------------------------------------

    def cases(self) -> None:
        for case in self.world.cases:
            if case.case_id in self.world.busy or case.host is None:
                continue
            if case.state is CaseState.SUBMITTING and case.host in self.incompatible:
                self._record(AbandonAttempt(case_id=case.case_id, not_before=None, charged=False,
                    reason=f"host {case.host} cannot be used: {self.incompatible[case.host]};"
                    " the case waits until a host can take it",
                ))  # fmt: skip
                continue
            seen = self.seen.get(case.host)
            if seen is None:
                continue  # unknown: never change a case on what we could not see
            if case.state is CaseState.SUBMITTING:
                self._submitting(case, seen)
            elif case.state in _ACTIVE:
                self._active(case, seen)
            elif case.state is CaseState.RETRIEVING:
                self._retrieving(case)

    def _submitting(self, case: CaseView, seen: Seen) -> None:
        lookup = find_task_by_label(seen.snapshot, case.label or "")
        if isinstance(lookup, Found) and lookup.task.created_at is not None:
            task = lookup.task
            copies = len(seen.snapshot.tasks_with_label(case.label or ""))
            if copies > 1:
                self._alarm(
                    f"{copies} remote tasks carry label {case.label}; adopting task {task.id},"
                    " the newest (a task restarted on the host keeps its label)",
                    case,
                )
            self._record(
                RecordEnqueued(
                    case_id=case.case_id,
                    attempt=case.attempt,
                    task_id=task.id,
                    created_at=task.created_at,
                    reason="task found in the queue by its label",
                )
            )
            return
        if isinstance(lookup, Found):
            return  # no creation time: the adapter reports such a node as incompatible
        settled = self.world.settled_at.get(
            case.case_id, self.world.started_at + self.policy.submit_settle.total_seconds()
        )
        if seen.taken_at < settled:
            return  # a submission may still land: look again next cycle
        if case.cancel_requested:
            self._fail(case, FailureCategory.CANCELLED, "cancelled before it reached the queue")
            return
        self._record(
            AbandonAttempt(
                case_id=case.case_id,
                not_before=self.now,
                charged=False,
                reason="the task never reached the queue; submitting a new attempt",
            )
        )

    def _active(self, case: CaseView, seen: Seen) -> None:
        key = (case.case_id, case.attempt)
        task = _identify(seen.snapshot, case)
        if task is None:
            self._missing(case, key)
            return
        self.missing.pop(key, None)
        if task.state in WAITING:
            self._waiting(case, task, seen.snapshot)
        elif task.state in STARTED:
            self._running(case, task, seen)
        else:
            self._done(case, task)

    def _missing(self, case: CaseView, key: tuple[str, int]) -> None:
        if case.state is CaseState.KILLING:
            self._end_killed(case, "the task is gone from the queue after our kill")
            return
        count = self.missing[key] = self.missing.get(key, 0) + 1
        if count < self.policy.missing_grace:
            return
        self.missing.pop(key, None)
        self._alarm(f"task {case.task_id} of case {case.case_id} vanished from the queue", case)
        self._infrastructure_loss(
            case, f"task {case.task_id} missing from {count} consecutive snapshots"
        )

    def _waiting(self, case: CaseView, task: RemoteTask, snapshot: StatusSnapshot) -> None:
        if case.cancel_requested or case.state is CaseState.KILLING:
            self._kill(case, task, case.kill_cause or KillCause.CANCEL, "cancelled by an operator")
            return
        if task.state == "held":  # e.g. its queue paused after a restart of the host's queue
            self.actions.append(Release(case.host or "", task.slot))

    def _running(self, case: CaseView, task: RemoteTask, seen: Seen) -> None:
        if case.state is CaseState.QUEUED:
            self._record(
                RecordStarted(
                    case_id=case.case_id,
                    attempt=case.attempt,
                    started_at=task.start,
                )
            )
        if case.state is CaseState.KILLING:
            self._kill(case, task, case.kill_cause or KillCause.CANCEL, "")
        elif case.cancel_requested:
            self._kill(case, task, KillCause.CANCEL, "cancelled by an operator")
        else:
            limit = (
                timedelta(hours=case.timeout_hours) if case.timeout_hours else self.policy.timeout
            )
            running_for = self.mono - self._running_since(case, task, seen)
            if running_for > limit.total_seconds() and not self._timing_unsafe(case.host):
                self._kill(case, task, KillCause.TIMEOUT, f"running longer than {limit}")

    def _running_since(self, case: CaseView, task: RemoteTask, seen: Seen) -> float:
        """When the task started, on our monotonic clock, worked out once per process.

        From the node's start time against the node's own clock read in the same round
        trip (no skew), so time spent unseen (an outage, the daemon down) counts too. Every
        other account of it (when we recorded seeing it run; the node's clock as it was
        before a jump of this cycle) can only make it later, never earlier: the latest wins,
        so a jump of either clock before this process first saw the task makes it patient,
        never hasty. Once carried over, later jumps of either clock change nothing.
        """
        key = (case.case_id, case.attempt)
        since = self.running_since.get(key)
        if since is None:
            estimates = [self.mono]  # the node gave no start time: from when we saw it run
            if task.start is not None and seen.node_time is not None:
                elapsed = (seen.node_time - task.start).total_seconds()
                estimates = [seen.taken_at + seen.rtt / 2 - elapsed]
                before = self.offset_before_jump.get(case.host or "")
                if before is not None:  # the start as the node's clock read before it jumped
                    estimates.append(min(self.mono, task.start.timestamp() - before))
            elif task.start is not None:
                estimates = [self.mono - (self.now - task.start).total_seconds()]
            if case.seen_running_at is not None:
                estimates.append(self.mono - (self.now - case.seen_running_at).total_seconds())
            since = self.running_since[key] = max(estimates)
        return since

    def _done(self, case: CaseView, task: RemoteTask) -> None:
        if task.result == "succeeded":
            if case.cancel_requested or case.kill_cause is KillCause.CANCEL:
                self._fail(case, FailureCategory.CANCELLED, "cancelled by an operator")
            else:
                self._record(
                    RecordRemoteSuccess(
                        case_id=case.case_id,
                        attempt=case.attempt,
                        ended_at=task.end,
                    )
                )
        elif task.result in ("failed", "failed_to_start"):
            reason = (
                f"the simulation exited with code {task.exit_code}"
                if task.result == "failed"
                else f"the task could not be started: {task.detail}"
            )
            self.actions.append(
                FailWithLog(case.case_id, case.attempt, case.host or "", task, reason)
            )
        elif task.result == "killed" and case.state is CaseState.KILLING:
            self._end_killed(case, "the task was killed as asked")
        else:
            cause = "killed, but not by us" if task.result == "killed" else task.detail
            self._infrastructure_loss(case, f"task {task.id} ended remotely: {cause}")

    def _retrieving(self, case: CaseView) -> None:
        if case.cancel_requested:
            self._fail(case, FailureCategory.CANCELLED, "cancelled by an operator")
            return
        self.actions.append(
            Fetch(case.case_id, case.attempt, case.host or "", case.remote_dir or "")
        )

    # --- endings -----------------------------------------------------------------------

    def _kill(self, case: CaseView, task: RemoteTask, cause: KillCause, reason: str) -> None:
        key = (case.case_id, case.attempt)
        if case.state is not CaseState.KILLING:
            self._record(RequestKill(case_id=case.case_id, cause=cause, reason=reason))
        started_killing = self.killing_since.setdefault(key, self.mono)
        waited = self.mono - started_killing
        if waited > self.policy.kill_confirm_timeout.total_seconds() and not self._timing_unsafe(
            case.host
        ):
            self._alarm(
                f"kill of task {task.id} not confirmed after {self.policy.kill_confirm_timeout};"
                f" GPU slot {case.host}/{case.slot} quarantined",
                case,
            )
            self._fail(
                case,
                _KILL_OUTCOME[cause],
                "kill not confirmed; slot quarantined",
                quarantine_task_id=task.id,
            )
            return
        self._send_kill(f"{case.case_id}#{case.attempt}", case.host or "", task, case.case_id)

    def _send_kill(self, key: str, host: str, task: RemoteTask, case_id: str | None) -> bool:
        """Ask for a kill, at most once per ``kill_resend_interval`` for the same ``key``."""
        last = self.kill_sent.get(key)
        if last is not None and self.mono - last < self.policy.kill_resend_interval.total_seconds():
            return False
        self.kill_sent[key] = self.mono
        self.actions.append(Cancel(host, task, case_id))
        return True

    def _end_killed(self, case: CaseView, reason: str) -> None:
        category = _KILL_OUTCOME[case.kill_cause or KillCause.CANCEL]
        self._fail(case, category, reason)

    def _infrastructure_loss(self, case: CaseView, reason: str) -> None:
        self.records.append(infrastructure_loss(case, reason, self.now, self.policy))

    def _fail(
        self,
        case: CaseView,
        category: FailureCategory,
        reason: str,
        *,
        quarantine_task_id: int | None = None,
    ) -> None:
        self.records.append(_failure(case, category, reason, quarantine_task_id))

    # --- slots -------------------------------------------------------------------------

    def slots(self) -> None:
        for slot in self.world.slots:
            seen = self.seen.get(slot.host)
            if seen is None:
                self.taken.add((slot.host, slot.name))
                continue
            snapshot = seen.snapshot
            remote = snapshot.slots.get(slot.name)
            tasks = snapshot.tasks_in_slot(slot.name)
            ours = self.ours.get(slot.host, set())
            foreign = [t for t in tasks if t.state in STARTED and t.label not in ours]
            if remote is None:
                self._alarm(
                    f"GPU slot {slot.key} does not exist on the host: no case is sent to it "
                    "(`mqi doctor` says how to set it up)",
                    key=f"missing-slot:{slot.key}",
                    host=slot.host,
                )
            if remote is None or not remote.open or any(t.state != "ended" for t in tasks):
                # missing, paused (perhaps by an operator, for maintenance) or busy
                self.taken.add((slot.host, slot.name))
            if slot.state is SlotState.FREE and foreign:
                self._alarm_strays(slot, foreign)
                self._record(
                    MarkSlotBusy(
                        host=slot.host,
                        slot=slot.name,
                        task_ids=[t.id for t in foreign],
                        reason="the slot runs tasks this daemon did not submit",
                    )
                )
            elif slot.state is SlotState.BUSY and not foreign:
                self._record(
                    MarkSlotFree(
                        host=slot.host,
                        slot=slot.name,
                        reason="the other tasks are gone",
                    )
                )
            elif slot.state is SlotState.QUARANTINED:
                self._quarantined(slot, snapshot)

    def _alarm_strays(self, slot: SlotView, foreign: list[RemoteTask]) -> None:
        """A task with our label but no live attempt (e.g. an attempt abandoned while its
        submission was in flight) is someone's to look at: said once, as the slot turns busy."""
        for stray in foreign:
            if (stray.label or "").startswith(TASK_LABEL_PREFIX):
                self._alarm(
                    f"task {stray.id} in {slot.key} carries this daemon's label {stray.label}"
                    " but belongs to no live attempt; it keeps the GPU busy: cancel it on the host"
                    " if it is not needed",
                    key=f"stray:{slot.key}:{stray.label}:{stray.created_at}",
                    host=slot.host,
                )

    def _quarantined(self, slot: SlotView, snapshot: StatusSnapshot) -> None:
        task = snapshot.tasks.get(slot.task_id) if slot.task_id is not None else None
        if task is not None and (task.label, task.created_at) != (
            slot.task_label,
            slot.task_created_at,
        ):
            task = None  # the id now names another task (ids are reused): ours is gone
        if task is None or task.state == "ended":
            self._record(
                LiftQuarantine(
                    host=slot.host,
                    slot=slot.name,
                    reason="the task we could not kill is gone",
                )
            )
            return
        self._send_kill(f"slot:{slot.key}", slot.host, task, None)
        self._alarm(
            f"GPU slot {slot.key} quarantined: task {task.id} still {task.state}",
            key=f"quarantine:{slot.key}",
            host=slot.host,
        )

    # --- allocation --------------------------------------------------------------------

    def allocate(self) -> None:
        free = [
            s
            for s in sorted(self.world.slots, key=lambda s: (s.host, s.name))
            if s.state is SlotState.FREE and (s.host, s.name) not in self.taken
        ]
        waiting = sorted(
            (
                c
                for c in self.world.cases
                if c.state is CaseState.WAITING
                and c.case_id not in self.world.busy
                and not c.cancel_requested
                and self._backoff_over(c)
            ),
            key=lambda c: c.arrival,
        )
        for case, slot in zip(waiting, free, strict=False):
            self.actions.append(Submit(case.case_id, slot.host, slot.name))

    def _backoff_over(self, case: CaseView) -> bool:
        """Whether a case's retry backoff (``not_before``, recorded in wall time) is over.

        No backoff is ever longer than ``retry_backoff_cap``: a ``not_before`` further
        ahead than that means our clock went back since it was recorded, and the wait is
        over rather than stretched by the jump.
        """
        if case.not_before is None:
            return True
        return not self.now < case.not_before <= self.now + self.policy.retry_backoff_cap

    # --- helpers -----------------------------------------------------------------------

    def _record(self, command: Command) -> None:
        self.records.append(command)

    def _alarm(
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


def _identify(snapshot: StatusSnapshot, case: CaseView) -> RemoteTask | None:
    """The task of this attempt: same label and creation time (ids get reused)."""
    lookup = find_task_by_label(snapshot, case.label or "", created_at=case.task_created_at)
    return lookup.task if isinstance(lookup, Found) else None


def infrastructure_loss(
    case: CaseView, reason: str, now: datetime, policy: Policy
) -> AbandonAttempt | FailCase:
    """The infrastructure lost an attempt: try again after a backoff, or fail the case
    once ``max_attempts`` attempts were lost (or if it is being cancelled anyway)."""
    charged = case.infra_failures + 1
    if case.cancel_requested:
        return _failure(case, FailureCategory.CANCELLED, reason)
    if charged >= policy.max_attempts:
        return _failure(
            case,
            FailureCategory.INFRASTRUCTURE,
            f"{reason}; {charged} attempts lost to the infrastructure",
        )
    return AbandonAttempt(
        case_id=case.case_id,
        not_before=now + policy.backoff(charged),
        charged=True,
        reason=f"{reason}; retrying",
    )


def _failure(
    case: CaseView, category: FailureCategory, reason: str, quarantine_task_id: int | None = None
) -> FailCase:
    return FailCase(
        case_id=case.case_id,
        category=category,
        reason=reason,
        quarantine=quarantine_task_id is not None,
        quarantine_task_id=quarantine_task_id,
    )
