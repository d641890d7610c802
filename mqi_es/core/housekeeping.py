"""Housekeeping on the nodes: only what is ours, only once nothing needs it. Pure.

- An ended task whose label is ours, names a registered case, and is no live attempt's
  (its outcome is recorded) is removed from the host's queue, so the status read every
  poll stays the size of the work in hand, not of the whole history.
- An ended case's folder on a node (as recorded when its attempts started) is removed once
  its retention is over: ``retention`` after it completed, ``failed_retention`` after it
  failed (kept longer, for inspection). Its partial uploads go with it.

Only on a host seen this cycle (a node back after a long absence is cleaned then), and a
folder never in a cycle whose timing cannot be trusted (a clock jumped).
"""

from __future__ import annotations

from collections.abc import Set

from mqi_es.core.actions import RemoveFolder, RemoveTasks
from mqi_es.core.cycle import Cycle
from mqi_es.core.ids import label_attempt
from mqi_es.core.remote import RemoteTask, StatusSnapshot


def finished_tasks(snapshot: StatusSnapshot, live: Set[str]) -> list[tuple[RemoteTask, str]]:
    """Our ended tasks that no live attempt (``live``: their labels) holds, each with the
    case its label names (whether that case is registered here is the views' to say)."""
    found = []
    for task in snapshot.tasks.values():
        if task.state == "ended" and task.label not in live:
            named = label_attempt(task.label)
            if named is not None:
                found.append((task, named[0]))
    return found


def keep_tidy(cycle: Cycle) -> None:
    rules = cycle.policy.housekeeping
    if rules.remove_finished_tasks:
        for host, seen in cycle.seen.items():
            finished = tuple(
                task
                for task, case_id in finished_tasks(seen.snapshot, cycle.ours.get(host, set()))
                if case_id in cycle.world.registered
            )
            if finished:
                cycle.actions.append(RemoveTasks(host, finished))
    for leftover in cycle.world.leftovers:
        if leftover.host not in cycle.seen or cycle.timing_unsafe(leftover.host):
            continue
        keep = rules.failed_retention if leftover.failed else rules.retention
        if cycle.now - leftover.ended_at >= keep:
            cycle.actions.append(RemoveFolder(leftover.case_id, leftover.host, leftover.folder))
