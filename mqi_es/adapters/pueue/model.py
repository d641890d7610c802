"""pueue's own view of its queue, as ``pueue status --json`` says it, and its translation
into the neutral vocabulary of the decision core (``to_snapshot``).

A value here carries pueue's meaning: ``state`` is pueue's task status, ``result`` how a
finished one ended, ``exit_code`` which code a failed one returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from mqi_es.core.remote import RemoteSlot, RemoteTask, StatusSnapshot
from mqi_es.core.remote import TaskResult as RemoteResult
from mqi_es.core.remote import TaskState as RemoteState

TaskState = Literal["queued", "stashed", "running", "paused", "locked", "done"]
TaskResult = Literal[
    "success", "failed", "failed_to_spawn", "killed", "errored", "dependency_failed"
]
GroupStatus = Literal["running", "paused", "reset"]

_STATES = frozenset(get_args(TaskState))
_RESULTS = frozenset(get_args(TaskResult))
_GROUP_STATUSES = frozenset(get_args(GroupStatus))


@dataclass(frozen=True, slots=True)
class PueueTask:
    """One task in the remote queue.

    ``result`` is set exactly when ``state`` is ``"done"``; ``exit_code`` exactly when the
    result is ``"failed"``; ``detail`` (the spawn error) exactly when it is
    ``"failed_to_spawn"``. ``created_at`` is None only for tasks written by pueue < 3.0.
    Construction checks these rules, so a hand-made task in a test cannot be one that
    pueue could never report.
    """

    id: int
    label: str | None
    group: str
    state: TaskState
    result: TaskResult | None
    exit_code: int | None
    created_at: datetime | None
    start: datetime | None
    end: datetime | None
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.state not in _STATES:
            raise ValueError(f"unknown task state {self.state!r}")
        if self.result is not None and self.result not in _RESULTS:
            raise ValueError(f"unknown task result {self.result!r}")
        if (self.state == "done") != (self.result is not None):
            raise ValueError("a task has a result exactly when its state is 'done'")
        if (self.result == "failed") != (self.exit_code is not None):
            raise ValueError("a task has an exit code exactly when its result is 'failed'")
        if (self.result == "failed_to_spawn") != (self.detail is not None):
            raise ValueError("a task has a detail exactly when its result is 'failed_to_spawn'")
        for moment in (self.created_at, self.start, self.end):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError("task timestamps must be timezone-aware")


@dataclass(frozen=True, slots=True)
class PueueGroup:
    """One queue of the node (a pueue group stands for one GPU)."""

    status: GroupStatus
    parallel_tasks: int

    def __post_init__(self) -> None:
        if self.status not in _GROUP_STATUSES:
            raise ValueError(f"unknown group status {self.status!r}")


@dataclass(frozen=True, slots=True)
class PueueState:
    """Every task and group of one node, as one status call returned them; the core looks
    tasks up in its ``to_snapshot`` (filtered here, never on the node: pueue before 3.4.0
    ignored ``status --group`` and returned every task)."""

    tasks: dict[int, PueueTask]
    groups: dict[str, PueueGroup]


@dataclass(frozen=True, slots=True)
class PueueLog:
    """A task together with the tail of its output, as ``log`` returned them."""

    task: PueueTask
    output: str


# --- into the core's terms ----------------------------------------------------------

_NEUTRAL_RESULTS: dict[TaskResult, RemoteResult] = {
    "success": "succeeded",
    "failed": "failed",
    "failed_to_spawn": "failed_to_start",
    "killed": "killed",
    "errored": "lost",
    "dependency_failed": "lost",
}
_LOST_BECAUSE = {"errored": "errored", "dependency_failed": "a task it depends on failed"}


def to_snapshot(state: PueueState) -> StatusSnapshot:
    """pueue's state in neutral terms: a group is a slot, open while it runs; a task queued
    in a paused group is held (``pueue start -g`` releases it); a paused task is suspended;
    an errored task, or one whose dependency failed, was lost."""
    paused = {name for name, group in state.groups.items() if group.status != "running"}
    slots = {name: RemoteSlot(open=name not in paused) for name in state.groups}
    return StatusSnapshot({key: _task(task, paused) for key, task in state.tasks.items()}, slots)


def _task(task: PueueTask, paused: set[str]) -> RemoteTask:
    match task.state:
        case "queued":
            state: RemoteState = "held" if task.group in paused else "waiting"
        case "stashed" | "locked":
            state = "waiting"  # not ours to enqueue: it waits for whoever stashed it
        case "running":
            state = "running"
        case "paused":
            state = "suspended"
        case _:
            state = "ended"
    result = _NEUTRAL_RESULTS[task.result] if task.result is not None else None
    detail = _LOST_BECAUSE.get(task.result or "", task.detail)
    return RemoteTask(
        id=task.id, label=task.label, slot=task.group, state=state, result=result,
        exit_code=task.exit_code, created_at=task.created_at, start=task.start, end=task.end,
        detail=detail,
    )  # fmt: skip
