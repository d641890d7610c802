"""Worlds for the decision core's tests: views, snapshots and clocks built in one line.

Wall times are around ``T0``; the monotonic clock reads ``MONO0`` at ``T0`` and runs with
the wall clock unless a test makes one of them jump (``decide(at=...)``).
"""

from datetime import UTC, datetime, timedelta

from msgspec.structs import replace

from mqi_es.core.actions import Memory
from mqi_es.core.commands import ClearAlarm, RaiseAlarm
from mqi_es.core.cycle import World
from mqi_es.core.ids import task_label
from mqi_es.core.policy import HostPolicy, Policy
from mqi_es.core.reconcile import reconcile
from mqi_es.core.remote import RemoteSlot, RemoteTask, Seen, StatusSnapshot
from mqi_es.core.states import AlarmState, CaseState, HostState, SlotState
from mqi_es.core.views import AlarmView, CaseView, HostView, SlotView

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STARTED = T0 - timedelta(hours=1)
# Progress reads left out: the lifecycle's tests name every action; test_run_progress sets it.
POLICY = Policy(hosts=(HostPolicy("n1", ("gpu0", "gpu1"), "~/mqi"),), progress_interval=None)
CREATED = T0 - timedelta(minutes=30)
MONO0 = 50_000.0  # the monotonic clock at T0


def mono(moment: datetime) -> float:
    """Where ``moment`` falls on the monotonic clock, while no clock has jumped."""
    return MONO0 + (moment - T0).total_seconds()


def case(case_id: str = "c1", state: CaseState = CaseState.RUNNING, **changes) -> CaseView:
    active = state not in (CaseState.WAITING, CaseState.HELD)
    base = CaseView(
        case_id=case_id, state=state, arrival=int(case_id[1:] or 0), attempt=1 if active else 0,
        detected_at=T0 - timedelta(hours=2), updated_at=T0 - timedelta(minutes=20),
        state_since=T0 - timedelta(minutes=20), file_count=1, total_bytes=1, fingerprint="f",
        host="n1" if active else None, slot="gpu0" if active else None,
        label=task_label(case_id, 1) if active else None,
        remote_dir=f"~/mqi/{case_id}/attempt-1" if active else None,
        task_id=7 if state in (CaseState.QUEUED, CaseState.RUNNING, CaseState.KILLING) else None,
        task_created_at=CREATED
        if state in (CaseState.QUEUED, CaseState.RUNNING, CaseState.KILLING)
        else None,
    )  # fmt: skip
    return replace(base, **changes)


def task(task_id: int = 7, label: str | None = None, state: str = "running", **kw) -> RemoteTask:
    result = kw.pop("result", None)
    return RemoteTask(
        id=task_id, label=task_label("c1", 1) if label is None else label,
        slot=kw.pop("slot", "gpu0"), state=state, result=result,
        exit_code=kw.pop("exit_code", None), created_at=kw.pop("created_at", CREATED),
        start=kw.pop("start", CREATED), end=kw.pop("end", None), detail=kw.pop("detail", None),
        node=kw.pop("node", None),
    )  # fmt: skip


def seen(
    *tasks: RemoteTask, paused: tuple[str, ...] = (), taken_at: datetime = T0,
    node_time: datetime | None = None, skew: float = 0.0,
    groups: tuple[str, ...] = ("gpu0", "gpu1"),
) -> Seen:  # fmt: skip
    """A snapshot sent at ``taken_at`` (our clocks), answered at ``node_time`` by the node's."""
    shown = {g: RemoteSlot(open=g not in paused) for g in groups}
    node = taken_at + timedelta(seconds=skew) if node_time is None else node_time
    return Seen(StatusSnapshot({t.id: t for t in tasks}, shown), mono(taken_at), node, skew, 0.0)


def slot(name: str = "gpu0", state: SlotState = SlotState.FREE, **kw) -> SlotView:
    return SlotView(host="n1", name=name, state=state, updated_at=T0, **kw)


def decide(
    cases=(), observation=None, slots=None, host_state=HostState.REACHABLE, now=T0,
    memory=None, policy=POLICY, at=None, hosts=None, **world,
):  # fmt: skip
    """One cycle at wall time ``now`` and monotonic time ``at`` (default: ``mono(now)``)."""
    if slots is None:
        holders = {c.slot: c for c in cases if c.slot}
        slots = [
            slot(g, SlotState.ALLOCATED, case_id=holders[g].case_id, attempt=1)
            if g in holders
            else slot(g)
            for g in ("gpu0", "gpu1")
        ]
    w = World(
        cases=list(cases), slots=slots,
        hosts=hosts if hosts is not None else [
            HostView(name="n1", address="127.0.0.1", state=host_state, updated_at=T0)
        ],
        observations={"n1": observation if observation is not None else seen()},
        started_at=mono(STARTED), mono=mono(now) if at is None else at, **world,
    )  # fmt: skip
    return reconcile(w, now, policy, memory if memory is not None else Memory())


def facts(decision) -> tuple:
    """The facts a decision records, its alarms left out (see ``raised``)."""
    return tuple(r for r in decision.records if not isinstance(r, _ALARM_COMMANDS))


def commands(decision) -> list[str]:
    """The facts a decision records, by type."""
    return [type(r).__name__ for r in facts(decision)]


def raised(decision) -> list[RaiseAlarm]:
    return [r for r in decision.records if isinstance(r, RaiseAlarm)]


def cleared(decision) -> list[str]:
    """The ids of the alarms a decision clears."""
    return [r.alarm_id for r in decision.records if isinstance(r, ClearAlarm)]


def standing(decision, before=()) -> list[AlarmView]:
    """The alarms not cleared after ``decision`` was recorded (``before``: those standing
    when it was made), as the views would show them next cycle."""
    gone = set(cleared(decision))
    kept = [a for a in before if a.alarm_id not in gone]
    return kept + [
        AlarmView(
            alarm_id=f"a{len(kept) + i}-{r.key}", number=len(kept) + i, key=r.key, kind=r.kind,
            subject=r.subject, message=r.message, state=AlarmState.OPEN,
            raised_at=r.raised_at or T0, case_id=r.about_case, host=r.host,
        )
        for i, r in enumerate(raised(decision))
    ]  # fmt: skip


_ALARM_COMMANDS = (RaiseAlarm, ClearAlarm)
