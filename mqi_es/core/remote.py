"""What the daemon sees of a host's queue, in terms every backend maps onto.

A host runs our tasks in **slots** (one GPU of a node's queue, one job of ours on a Slurm
cluster). One status query of a host gives a ``StatusSnapshot``: its tasks and its
slots, each task in a neutral state:

    waiting     queued, will start by itself
    held        queued, but the host holds it (its slot's queue is paused): ``release``
    running     runs, holds its GPU
    suspended   started, paused: still holds its GPU
    ended       with a result: succeeded, failed (exit code), failed_to_start (why),
                killed, timed_out (the host stopped it at its own time limit), or lost
                (the infrastructure ended it: ``detail`` says how)

``Seen`` is a fact about the host. ``Unseen`` is only a fact about our view of it, and says
what was actually seen: the host could not be reached, its queue service did not answer,
its answer could not be read, its queue software cannot be used safely, or no answer came
yet this cycle. The decision core never changes a case because of it (an incompatible host
excepted: that is a definite answer, see ``mqi_es.core.reconcile``).

Times: ``taken_at`` is on this process's monotonic clock (local waits are measured on it,
so a jump of the wall clock cannot shorten or stretch them); ``node_time`` is the host's
own clock, read in the same round trip as the snapshot, so remote durations are computed
on the host's clock alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, get_args

from mqi_es.core.states import HostState

TaskState = Literal["waiting", "held", "running", "suspended", "ended"]
TaskResult = Literal["succeeded", "failed", "failed_to_start", "killed", "timed_out", "lost"]

_STATES = frozenset(get_args(TaskState))
_RESULTS = frozenset(get_args(TaskResult))
WAITING = frozenset({"waiting", "held"})  # not started: a cancel removes it
STARTED = frozenset({"running", "suspended"})  # holds its GPU: a cancel kills it


@dataclass(frozen=True, slots=True)
class RemoteTask:
    """One task in a host's queue.

    ``result`` is set exactly when ``state`` is ``"ended"``; ``exit_code`` exactly when the
    result is ``"failed"``; ``detail`` (what the host said) is required for
    ``"failed_to_start"`` and ``"lost"``. ``created_at`` is the host's record of when the
    task was queued (ids are reused: a task is ours by its label and this time).
    Construction checks these rules, so a hand-made task in a test cannot be one that no
    host could report.
    """

    id: int
    label: str | None
    slot: str
    state: TaskState
    result: TaskResult | None
    exit_code: int | None
    created_at: datetime | None
    start: datetime | None
    end: datetime | None
    detail: str | None = None
    node: str | None = None  # where it runs or ran, when the host says (a cluster's node)

    def __post_init__(self) -> None:
        if self.state not in _STATES:
            raise ValueError(f"unknown task state {self.state!r}")
        if self.result is not None and self.result not in _RESULTS:
            raise ValueError(f"unknown task result {self.result!r}")
        if (self.state == "ended") != (self.result is not None):
            raise ValueError("a task has a result exactly when its state is 'ended'")
        if (self.result == "failed") != (self.exit_code is not None):
            raise ValueError("a task has an exit code exactly when its result is 'failed'")
        if self.result in ("failed_to_start", "lost") and self.detail is None:
            raise ValueError(f"a task whose result is {self.result!r} says why (detail)")
        for moment in (self.created_at, self.start, self.end):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError("task timestamps must be timezone-aware")


@dataclass(frozen=True, slots=True)
class RemoteSlot:
    """One slot as the host shows it: ``open`` when the host would start our next task
    there (a paused queue is not)."""

    open: bool


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Every task and slot of one host, as one status query returned them.

    Tasks are indexed by label and by slot once, when the snapshot is made: the decision
    core looks up every active case and every slot in it each cycle.
    """

    tasks: dict[int, RemoteTask]
    slots: dict[str, RemoteSlot]
    _by_label: dict[str | None, list[RemoteTask]] = field(init=False, repr=False, compare=False)
    _by_slot: dict[str, list[RemoteTask]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_label: dict[str | None, list[RemoteTask]] = {}
        by_slot: dict[str, list[RemoteTask]] = {}
        for task in sorted(self.tasks.values(), key=lambda t: t.id):
            by_label.setdefault(task.label, []).append(task)
            by_slot.setdefault(task.slot, []).append(task)
        object.__setattr__(self, "_by_label", by_label)
        object.__setattr__(self, "_by_slot", by_slot)

    def tasks_with_label(self, label: str) -> list[RemoteTask]:
        """Tasks carrying ``label``, by ascending id (labels need not be unique)."""
        return list(self._by_label.get(label, ()))

    def tasks_in_slot(self, slot: str) -> list[RemoteTask]:
        """Tasks of ``slot``, by ascending id."""
        return list(self._by_slot.get(slot, ()))


@dataclass(frozen=True, slots=True)
class LogTails:
    """The last lines of the output of the tasks asked about, by task id: only those the
    host still had, under the label they were asked with (an id handed out again to
    another task is not ours)."""

    by_task: Mapping[int, str]


# --- finding our task by its label ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    task: RemoteTask


@dataclass(frozen=True, slots=True)
class NotFound:
    pass


@dataclass(frozen=True, slots=True)
class LookupUnknown:
    reason: str


LabelLookup = Found | NotFound | LookupUnknown

_OLDEST = datetime.min.replace(tzinfo=UTC)


def find_task_by_label(
    snapshot: StatusSnapshot | None,
    label: str,
    *,
    created_at: datetime | None = None,
    unknown_reason: str = "no status snapshot of the host",
) -> LabelLookup:
    """Find the task we submitted under ``label``.

    Without a snapshot the answer is ``LookupUnknown``: not being able to look is not
    "absent". Hosts reuse ids and do not keep labels unique, so ``created_at``, when known,
    must match too. When several tasks carry the label and no ``created_at`` is given, the
    newest by ``created_at`` wins (a restarted task is a copy with its label, and the copy
    is the live one; ids cannot tell age since they are reused). Callers that must alarm on
    duplicates can use ``snapshot.tasks_with_label``.
    """
    if snapshot is None:
        return LookupUnknown(unknown_reason)
    candidates = snapshot.tasks_with_label(label)
    if created_at is not None:
        candidates = [task for task in candidates if task.created_at == created_at]
    if not candidates:
        return NotFound()
    return Found(max(candidates, key=lambda t: (t.created_at or _OLDEST, t.id)))


# --- what a poll saw --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    snapshot: StatusSnapshot
    taken_at: float  # monotonic seconds when the status query was sent
    node_time: datetime | None = None  # the host's clock when it answered (None: not read)
    skew: float | None = None  # the host's clock minus ours, seconds (within rtt / 2)
    rtt: float = 0.0  # seconds between sending the query and reading its answer
    software: str = ""  # the host's queue software, as it names itself (e.g. "slurm 23.11.4")


class Blindness(StrEnum):
    """Why a host was not seen."""

    UNREACHABLE = "unreachable"  # refused, timed out, connection lost, no route
    QUEUE_DOWN = "queue_down"  # the host answered; its queue service did not
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
