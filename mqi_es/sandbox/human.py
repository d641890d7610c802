"""What pueue prints for people: messages, group headlines, a plain status and log view.

The messages are pueue's own wording (its daemon's message handlers); the tables are kept
plain, since nothing in this project parses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mqi_es.sandbox.protocol import Reply
from mqi_es.sandbox.state import DEFAULT_GROUP, Group, PueueState, Task


def task_action(message: str, matching: Sequence[int], failing: Sequence[int]) -> Reply:
    """pueue's answer to a command on several ids: success if at least one id qualified."""
    matched = ", ".join(map(str, matching))
    failed = ", ".join(map(str, failing))
    if not failing:
        return Reply(stdout=f"{message}: {matched}\n")
    if not matching:
        return Reply(stderr=f"The command failed for tasks: {failed}\n", code=1)
    return Reply(stdout=f"{message}: {matched}\nThe command failed for tasks: {failed}\n")


def missing_group(name: str, groups: Mapping[str, Group]) -> Reply:
    names = ", ".join(f'"{group}"' for group in sorted(groups))
    return Reply(stderr=f"Group {name} doesn't exists. Use one of these: [{names}]\n", code=1)


def group_headline(name: str, group: Group) -> str:
    return f'Group "{name}" ({group.parallel_tasks} parallel): {group.status.lower()}'


def group_list(groups: Mapping[str, Group]) -> str:
    return "\n".join(group_headline(name, groups[name]) for name in sorted(groups)) + "\n"


def status_table(state: PueueState, only_group: str | None) -> str:
    tasks = [t for t in state.tasks.values() if only_group in (None, t.group)]
    if not tasks:
        name = only_group or DEFAULT_GROUP
        group = state.groups.get(name)
        if group is None:
            return f'There exists no group "{name}"\n'
        return f"{group_headline(name, group)}\n\nTask list is empty.\n"
    by_group: dict[str, list[Task]] = {}
    for task in sorted(tasks, key=lambda t: t.id):
        by_group.setdefault(task.group, []).append(task)
    order = sorted(by_group, key=lambda name: (name != DEFAULT_GROUP, name))
    blocks = []
    for name in order:
        rows = [
            f"{t.id:>4}  {outcome(t):<26} {t.label or '':<12} {t.command}" for t in by_group[name]
        ]
        blocks.append("\n".join([group_headline(name, state.groups[name]), *rows]))
    return "\n\n".join(blocks) + "\n"


def outcome(task: Task) -> str:
    """How ``pueue log`` describes where a task stands."""
    if task.phase != "Done":
        return task.phase.lower()
    assert task.result is not None
    if task.result.kind == "Success":
        return "completed successfully"
    if task.result.kind == "Failed":
        return f"failed with exit code {task.result.exit_code}"
    if task.result.kind == "FailedToSpawn":
        return "Failed to spawn"
    return "killed by system or user"


def log_text(state: PueueState, outputs: Mapping[int, str]) -> Reply:
    shown = [state.tasks[i] for i in sorted(outputs) if state.tasks[i].phase != "Queued"]
    if not shown:
        return Reply(stderr="There are no finished tasks\n")
    blocks = [
        f"Task {task.id}: {outcome(task)}\nCommand: {task.command}\nPath: {task.path}\n\n"
        f"{outputs[task.id]}"
        for task in shown
    ]
    return Reply(stdout="\n\n".join(blocks) + "\n")
