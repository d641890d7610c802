"""What a GPU node's task queue looked like at one moment, independent of the queue software.

The decision core reads these types and never the pueue adapter that produces them, so
a value here already carries its meaning: ``state`` says where a task is in its life,
``result`` how a finished one ended, ``exit_code`` which code a failed one returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

TaskState = Literal["queued", "stashed", "running", "paused", "locked", "done"]
TaskResult = Literal[
    "success", "failed", "failed_to_spawn", "killed", "errored", "dependency_failed"
]
GroupStatus = Literal["running", "paused", "reset"]

_STATES = frozenset(get_args(TaskState))
_RESULTS = frozenset(get_args(TaskResult))
_GROUP_STATUSES = frozenset(get_args(GroupStatus))


@dataclass(frozen=True, slots=True)
class RemoteTask:
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
class RemoteGroup:
    """One queue of the node (a pueue group stands for one GPU)."""

    status: GroupStatus
    parallel_tasks: int

    def __post_init__(self) -> None:
        if self.status not in _GROUP_STATUSES:
            raise ValueError(f"unknown group status {self.status!r}")


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Every task and group of one node, as one status call returned them.

    Tasks are indexed by label and by group once, when the snapshot is made: the decision
    core looks up every active case and every slot in it each cycle.
    """

    tasks: dict[int, RemoteTask]
    groups: dict[str, RemoteGroup]
    _by_label: dict[str | None, list[RemoteTask]] = field(init=False, repr=False, compare=False)
    _by_group: dict[str, list[RemoteTask]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_label: dict[str | None, list[RemoteTask]] = {}
        by_group: dict[str, list[RemoteTask]] = {}
        for task in sorted(self.tasks.values(), key=lambda t: t.id):
            by_label.setdefault(task.label, []).append(task)
            by_group.setdefault(task.group, []).append(task)
        object.__setattr__(self, "_by_label", by_label)
        object.__setattr__(self, "_by_group", by_group)

    def tasks_with_label(self, label: str) -> list[RemoteTask]:
        """Tasks carrying ``label``, by ascending id (labels need not be unique)."""
        return list(self._by_label.get(label, ()))

    def tasks_in_group(self, group: str) -> list[RemoteTask]:
        """Tasks of ``group``, by ascending id.

        Filtering happens here, never on the node: pueue before 3.4.0 ignored
        ``status --group`` and returned every task.
        """
        return list(self._by_group.get(group, ()))


@dataclass(frozen=True, slots=True)
class TaskLog:
    """A task together with the tail of its output, as ``log`` returned them."""

    task: RemoteTask
    output: str


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
    unknown_reason: str = "no status snapshot of the node",
) -> LabelLookup:
    """Find the task we submitted under ``label``.

    Without a snapshot the answer is ``LookupUnknown``: not being able to look is not
    "absent". pueue reuses ids after ``clean`` and does not keep labels unique, so
    ``created_at``, when known, must match too. When several tasks carry the label and
    no ``created_at`` is given, the newest by ``created_at`` wins: ``pueue restart``
    copies a task with its label, and the copy is the live one; ids cannot tell age
    since they are reused. Callers that must alarm on duplicates can use
    ``snapshot.tasks_with_label``.
    """
    if snapshot is None:
        return LookupUnknown(unknown_reason)
    candidates = snapshot.tasks_with_label(label)
    if created_at is not None:
        candidates = [task for task in candidates if task.created_at == created_at]
    if not candidates:
        return NotFound()
    return Found(max(candidates, key=lambda t: (t.created_at or _OLDEST, t.id)))
