"""When to read how far the running tasks got. Pure.

Every ``progress_interval`` per host seen, one ``ReadProgress`` for all its running tasks
of ours (found by label and creation time, as their lifecycle finds them): one remote
command per host per interval, never one per case per cycle. A killing or cancelled
attempt's progress no longer matters.
"""

from __future__ import annotations

from mqi_es.core.actions import ReadProgress, RunOf
from mqi_es.core.cycle import Cycle
from mqi_es.core.remote import Found, find_task_by_label
from mqi_es.core.states import CaseState


def watch_progress(cycle: Cycle) -> None:
    interval = cycle.policy.progress_interval
    if interval is None:
        return
    for host, seen in cycle.seen.items():
        last = cycle.progress_read.get(host)
        if last is not None and cycle.mono - last < interval.total_seconds():
            continue
        runs = []
        for case in cycle.world.cases:
            if case.host != host or case.state is not CaseState.RUNNING or case.cancel_requested:
                continue
            lookup = find_task_by_label(
                seen.snapshot, case.label or "", created_at=case.task_created_at
            )
            if isinstance(lookup, Found) and lookup.task.state == "running":
                runs.append(RunOf(case.case_id, case.attempt, lookup.task, case.progress))
        if runs:
            cycle.actions.append(ReadProgress(host, tuple(runs)))
            cycle.progress_read[host] = cycle.mono
