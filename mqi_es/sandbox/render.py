"""pueue's JSON output, byte for byte in shape: ``status --json``, ``group --json``, ``log --json``.

serde_json prints compact JSON (no spaces), struct fields in declaration order, maps with
sorted keys (``BTreeMap``: task ids in numeric order, group names alphabetically) and non-ASCII
text unescaped. Two dialects exist:

* v4 (4.0.x): the timestamps live inside the status object,
  ``{"Done":{"enqueued_at":T,"start":T,"end":T,"result":R}}``.
* v3 (3.x): ``status`` is ``"Queued"``/``"Running"`` or ``{"Done":R}``, and the task carries
  ``enqueued_at``, ``prev_status``, ``start`` and ``end`` itself. ``prev_status`` is
  ``"Locked"``: pueue 3 creates every task locked and ``Task::new`` copies that starting status
  (seen in the real 3.1.2 captures, ``tests/data/pueue-samples/real-3.1.2``); only ``edit``
  changes it, which the stand-in does not support.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mqi_es.sandbox.dialect import Dialect
from mqi_es.sandbox.state import Group, PueueState, Task, TaskResult
from mqi_es.sandbox.timestamps import rfc3339


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def status_json(state: PueueState, dialect: Dialect, *, group: str | None = None) -> str:
    """``pueue status --json [-g GROUP]``: the group filter applies to tasks only."""
    tasks = {
        str(task_id): task_object(task, dialect)
        for task_id, task in sorted(state.tasks.items())
        if group is None or task.group == group
    }
    return dumps({"tasks": tasks, "groups": _groups(state.groups)})


def groups_json(state: PueueState) -> str:
    """``pueue group --json``."""
    return dumps(_groups(state.groups))


def log_json(state: PueueState, outputs: Mapping[int, str], dialect: Dialect) -> str:
    """``pueue log --json``: each selected task (environment emptied) with its output."""
    entries = {}
    for task_id in sorted(outputs):
        task = task_object(state.tasks[task_id], dialect)
        task["envs"] = {}
        entries[str(task_id)] = {"task": task, "output": outputs[task_id]}
    return dumps(entries)


def task_object(task: Task, dialect: Dialect) -> dict[str, Any]:
    head: dict[str, Any] = {"id": task.id, "created_at": rfc3339(task.created_at)}
    if dialect == "v3":
        head["enqueued_at"] = rfc3339(task.enqueued_at)
    body: dict[str, Any] = {
        "original_command": task.command,
        "command": task.command,
        "path": task.path,
        "envs": task.envs,
        "group": task.group,
        "dependencies": [],
        "priority": 0,
        "label": task.label,
    }
    if dialect == "v4":
        return head | body | {"status": _status_v4(task)}
    return (
        head
        | body
        | {
            "status": _status_v3(task),
            "prev_status": "Locked",
            "start": _optional_time(task.start),
            "end": _optional_time(task.end),
        }
    )


def _status_v4(task: Task) -> dict[str, Any]:
    enqueued_at = rfc3339(task.enqueued_at)
    if task.phase == "Queued":
        return {"Queued": {"enqueued_at": enqueued_at}}
    assert task.start is not None
    if task.phase == "Running":
        return {"Running": {"enqueued_at": enqueued_at, "start": rfc3339(task.start)}}
    assert task.end is not None and task.result is not None
    return {
        "Done": {
            "enqueued_at": enqueued_at,
            "start": rfc3339(task.start),
            "end": rfc3339(task.end),
            "result": _result(task.result),
        }
    }


def _status_v3(task: Task) -> str | dict[str, Any]:
    if task.phase != "Done":
        return task.phase
    assert task.result is not None
    return {"Done": _result(task.result)}


def _result(result: TaskResult) -> str | dict[str, Any]:
    if result.kind == "Failed":
        return {"Failed": result.exit_code}
    if result.kind == "FailedToSpawn":
        return {"FailedToSpawn": result.message}
    return result.kind


def _optional_time(epoch_ns: int | None) -> str | None:
    return None if epoch_ns is None else rfc3339(epoch_ns)


def _groups(groups: Mapping[str, Group]) -> dict[str, Any]:
    return {
        name: {"status": group.status, "parallel_tasks": group.parallel_tasks}
        for name, group in sorted(groups.items())
    }
