"""The stand-in daemon's state: tasks and groups, their persistence and restart rules.

Only the task states the stand-in produces exist here: Queued, Running and Done with the
results Success, Failed(code), FailedToSpawn(message) and Killed. The file format is our own
(integer nanoseconds keep full precision); ``render.py`` turns it into pueue's JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_GROUP = "default"
STATE_SCHEMA = 1

Phase = Literal["Queued", "Running", "Done"]
ResultKind = Literal["Success", "Failed", "FailedToSpawn", "Killed"]
GroupStatus = Literal["Running", "Paused"]


@dataclass(frozen=True, slots=True)
class TaskResult:
    kind: ResultKind
    exit_code: int | None = None  # only for Failed
    message: str | None = None  # only for FailedToSpawn


@dataclass(slots=True)
class Task:
    id: int
    created_at: int
    command: str
    path: str
    envs: dict[str, str]
    group: str
    label: str | None
    enqueued_at: int
    phase: Phase = "Queued"
    start: int | None = None
    end: int | None = None
    result: TaskResult | None = None

    def finish(self, result: TaskResult, end: int | None) -> None:
        self.phase = "Done"
        self.end = end
        self.result = result


@dataclass(slots=True)
class Group:
    status: GroupStatus = "Running"
    parallel_tasks: int = 1


@dataclass(slots=True)
class PueueState:
    tasks: dict[int, Task] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=lambda: {DEFAULT_GROUP: Group()})

    def next_task_id(self) -> int:
        """pueue's rule: one more than the highest id in use, so ids come back after clean."""
        return max(self.tasks, default=-1) + 1

    def restore_after_restart(self, now: int | None) -> None:
        """Apply pueue's start-up rules to a state left by a previous daemon.

        Tasks still marked running (the old daemon died without reaping them) become
        Done/Killed, with ``end`` set to ``now``: pueue 4 writes the restart time, pueue 3
        leaves ``end`` null (pass None). Their processes are not touched: pueue does not know
        them any more. Every group that still has queued tasks is paused so that nothing
        starts before someone says so; the others keep their status.
        """
        for task in self.tasks.values():
            if task.phase == "Running":
                task.finish(TaskResult("Killed"), now)
            elif task.phase == "Done" and task.end is None and now is not None:
                task.end = now  # a v3 state on a node switched to v4, which needs an end
        for task in self.tasks.values():
            if task.phase == "Queued":
                self.groups.setdefault(task.group, Group()).status = "Paused"
        self.groups.setdefault(DEFAULT_GROUP, Group())

    def save(self, path: Path) -> None:
        """Write the state atomically: temporary file, fsync, rename, fsync of the folder."""
        document = {
            "schema": STATE_SCHEMA,
            "groups": {name: _group_record(group) for name, group in self.groups.items()},
            "tasks": [_task_record(task) for task in self.tasks.values()],
        }
        temporary = path.with_name(path.name + ".partial")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    @classmethod
    def load(cls, path: Path) -> PueueState:
        """Read a saved state; a missing file is a fresh daemon."""
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        if document.get("schema") != STATE_SCHEMA:
            raise ValueError(f"{path}: unknown state schema {document.get('schema')!r}")
        return cls(
            tasks={record["id"]: _task_from_record(record) for record in document["tasks"]},
            groups={name: Group(**record) for name, record in document["groups"].items()},
        )


def _group_record(group: Group) -> dict[str, Any]:
    return {"status": group.status, "parallel_tasks": group.parallel_tasks}


def _task_record(task: Task) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": task.id,
        "created_at": task.created_at,
        "command": task.command,
        "path": task.path,
        "envs": task.envs,
        "group": task.group,
        "label": task.label,
        "enqueued_at": task.enqueued_at,
        "phase": task.phase,
        "start": task.start,
        "end": task.end,
        "result": None,
    }
    if task.result is not None:
        record["result"] = {
            "kind": task.result.kind,
            "exit_code": task.result.exit_code,
            "message": task.result.message,
        }
    return record


def _task_from_record(record: dict[str, Any]) -> Task:
    result = record["result"]
    return Task(
        id=record["id"],
        created_at=record["created_at"],
        command=record["command"],
        path=record["path"],
        envs=record["envs"],
        group=record["group"],
        label=record["label"],
        enqueued_at=record["enqueued_at"],
        phase=record["phase"],
        start=record["start"],
        end=record["end"],
        result=None if result is None else TaskResult(**result),
    )
