"""The rules for hosts and their slots: what each host showed (recorded at changes only),
which slots run someone else's tasks, which quarantined slot is clear again, and which free
slot takes which waiting case, in arrival order. Pure."""

from __future__ import annotations

import math

from mqi_es.core.actions import Submit
from mqi_es.core.commands import (
    LiftQuarantine,
    MarkSlotBusy,
    MarkSlotFree,
    RecordHostReachable,
    RecordHostUnavailable,
)
from mqi_es.core.cycle import Cycle
from mqi_es.core.ids import TASK_LABEL_PREFIX
from mqi_es.core.remote import NOT_POLLED, STARTED, Blindness, RemoteTask, StatusSnapshot, Unseen
from mqi_es.core.states import AlarmKind, CaseState, HostState, SlotState
from mqi_es.core.views import CaseView, HostView, SlotView


def observe_hosts(cycle: Cycle) -> None:
    views = {h.name: h for h in cycle.world.hosts}
    for host in cycle.policy.hosts:
        seen = cycle.world.observations.get(host.name, NOT_POLLED)
        view = views.get(host.name)
        if isinstance(seen, Unseen):
            _unseen(cycle, host.name, view, seen)
            continue
        cycle.seen[host.name] = seen
        cycle.follow_node_clock(host.name, seen)
        if view is not None and view.state is not HostState.REACHABLE:
            cycle.record(RecordHostReachable(name=host.name, at=cycle.now))
    for case in cycle.world.cases:
        if case.label is not None and case.host is not None:
            cycle.ours.setdefault(case.host, set()).add(case.label)


def _unseen(cycle: Cycle, name: str, view: HostView | None, seen: Unseen) -> None:
    state = seen.host_state
    if state is None:
        return  # no answer yet, or our own fault: nothing is known about the node
    if view is not None and view.state is not state:
        cycle.record(RecordHostUnavailable(name=name, state=state, since=cycle.now,
            reason=seen.reason,
        ))  # fmt: skip
    if seen.kind is Blindness.INCOMPATIBLE:
        cycle.incompatible[name] = seen.reason
        cycle.alarm(
            AlarmKind.HOST_INCOMPATIBLE, f"host {name} cannot be used: {seen.reason}",
            key=f"incompatible:{name}", host=name,
        )  # fmt: skip


def check_slots(cycle: Cycle) -> None:
    for slot in cycle.world.slots:
        seen = cycle.seen.get(slot.host)
        if seen is None:
            cycle.taken.add((slot.host, slot.name))
            continue
        snapshot = seen.snapshot
        remote = snapshot.slots.get(slot.name)
        tasks = snapshot.tasks_in_slot(slot.name)
        ours = cycle.ours.get(slot.host, set())
        foreign = [t for t in tasks if t.state in STARTED and t.label not in ours]
        if remote is None:
            cycle.alarm(
                AlarmKind.SLOT_MISSING,
                f"GPU slot {slot.key} does not exist on the host: no case is sent to it "
                "(`mqi doctor` says how to set it up)",
                key=f"missing-slot:{slot.key}",
                host=slot.host,
                subject=f"gpu {slot.key}",
            )
        if remote is None or not remote.open or any(t.state != "ended" for t in tasks):
            # missing, paused (perhaps by an operator, for maintenance) or busy
            cycle.taken.add((slot.host, slot.name))
        if slot.state in (SlotState.FREE, SlotState.BUSY):  # a quarantine says it already
            _alarm_strays(cycle, slot, foreign)
        if slot.state is SlotState.FREE and foreign:
            cycle.record(MarkSlotBusy(host=slot.host, slot=slot.name,
                task_ids=[t.id for t in foreign],
                reason="the slot runs tasks this daemon did not submit",
            ))  # fmt: skip
        elif slot.state is SlotState.BUSY and not foreign:
            cycle.record(
                MarkSlotFree(host=slot.host, slot=slot.name, reason="the other tasks are gone")
            )
        elif slot.state is SlotState.QUARANTINED:
            _quarantined(cycle, slot, snapshot)


def _alarm_strays(cycle: Cycle, slot: SlotView, foreign: list[RemoteTask]) -> None:
    """A task with our label but no live attempt (e.g. an attempt abandoned while its
    submission was in flight) is someone's to look at, as long as it is there."""
    for stray in foreign:
        if (stray.label or "").startswith(TASK_LABEL_PREFIX):
            cycle.alarm(
                AlarmKind.STRAY_TASK,
                f"task {stray.id} in {slot.key} carries this daemon's label {stray.label}"
                " but belongs to no live attempt; it keeps the GPU busy: cancel it on the host"
                " if it is not needed",
                key=f"stray:{slot.key}:{stray.label}:{stray.created_at}",
                host=slot.host,
                subject=f"gpu {slot.key}",
            )


def _quarantined(cycle: Cycle, slot: SlotView, snapshot: StatusSnapshot) -> None:
    task = snapshot.tasks.get(slot.task_id) if slot.task_id is not None else None
    if task is not None and (task.label, task.created_at) != (
        slot.task_label,
        slot.task_created_at,
    ):
        task = None  # the id now names another task (ids are reused): ours is gone
    if task is None or task.state == "ended":
        cycle.record(LiftQuarantine(host=slot.host, slot=slot.name,
            reason="the task we could not kill is gone",
        ))  # fmt: skip
        return
    cycle.send_kill(f"slot:{slot.key}", slot.host, task, None)
    cycle.alarm(
        AlarmKind.SLOT_QUARANTINED,
        f"GPU slot {slot.key} quarantined: task {task.id} still {task.state}",
        key=f"quarantine:{slot.key}",
        host=slot.host,
        subject=f"gpu {slot.key}",
    )


def allocate(cycle: Cycle) -> None:
    free = [
        s
        for s in sorted(cycle.world.slots, key=lambda s: (s.host, s.name))
        if s.state is SlotState.FREE and (s.host, s.name) not in cycle.taken
    ]
    waiting = sorted(
        (
            c
            for c in cycle.world.cases
            if c.state is CaseState.WAITING
            and c.case_id not in cycle.world.busy
            and not c.cancel_requested
            and _backoff_over(cycle, c)
        ),
        key=lambda c: c.arrival,
    )
    # Room on each node whose free space is known, after what it already keeps free.
    room = {h: free - cycle.policy.node_disk_reserve for h, free in cycle.world.disk_free.items()}
    for case in waiting:
        slot = next((s for s in free if room.get(s.host, math.inf) >= case.total_bytes), None)
        if slot is None:
            continue  # no node has room for it now: it waits
        free.remove(slot)
        room[slot.host] = room.get(slot.host, math.inf) - case.total_bytes
        cycle.actions.append(Submit(case.case_id, slot.host, slot.name))


def _backoff_over(cycle: Cycle, case: CaseView) -> bool:
    """Whether a case's retry backoff (``not_before``, recorded in wall time) is over.

    No backoff is ever longer than ``retry_backoff_cap``: a ``not_before`` further
    ahead than that means our clock went back since it was recorded, and the wait is
    over rather than stretched by the jump.
    """
    if case.not_before is None:
        return True
    return not cycle.now < case.not_before <= cycle.now + cycle.policy.retry_backoff_cap
