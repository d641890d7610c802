"""The rules for a case with an attempt under way, on a host seen this cycle (an unseen
host changes nothing): adopt a submitted task or abandon an attempt that never reached the
queue; follow the task by label and creation time; time it out, kill it, confirm the kill;
fetch its results or fail it. Pure."""

from __future__ import annotations

from datetime import timedelta

from mqi_es.core.actions import FailWithLog, Fetch, Release
from mqi_es.core.commands import (
    AbandonAttempt,
    RecordEnqueued,
    RecordRemoteSuccess,
    RecordStarted,
    RequestKill,
)
from mqi_es.core.cycle import ACTIVE, Cycle
from mqi_es.core.remote import STARTED, WAITING, Found, RemoteTask, Seen, find_task_by_label
from mqi_es.core.states import AlarmKind, CaseState, FailureCategory, KillCause
from mqi_es.core.views import CaseView

_KILL_OUTCOME = {
    KillCause.TIMEOUT: FailureCategory.TIMEOUT,
    KillCause.CANCEL: FailureCategory.CANCELLED,
}


def follow_cases(cycle: Cycle) -> None:
    for case in cycle.world.cases:
        if case.case_id in cycle.world.busy or case.host is None:
            continue
        if case.state is CaseState.SUBMITTING and case.host in cycle.incompatible:
            cycle.record(AbandonAttempt(case_id=case.case_id, not_before=None, charged=False,
                reason=f"host {case.host} cannot be used: {cycle.incompatible[case.host]};"
                " the case waits until a host can take it",
            ))  # fmt: skip
            continue
        seen = cycle.seen.get(case.host)
        if seen is None:
            continue  # unknown: never change a case on what we could not see
        if case.state is CaseState.SUBMITTING:
            _submitting(cycle, case, seen)
        elif case.state in ACTIVE:
            _active(cycle, case, seen)
        elif case.state is CaseState.RETRIEVING:
            _retrieving(cycle, case)


def _submitting(cycle: Cycle, case: CaseView, seen: Seen) -> None:
    lookup = find_task_by_label(seen.snapshot, case.label or "")
    if isinstance(lookup, Found) and lookup.task.created_at is not None:
        task = lookup.task
        copies = len(seen.snapshot.tasks_with_label(case.label or ""))
        if copies > 1:
            cycle.alarm(
                AlarmKind.CASE_DUPLICATED,
                f"{copies} remote tasks carry label {case.label}; adopting task {task.id},"
                " the newest (a task restarted on the host keeps its label)",
                key=f"duplicates:{case.label}",
                case=case,
            )
        cycle.record(
            RecordEnqueued(
                case_id=case.case_id,
                attempt=case.attempt,
                task_id=task.id,
                created_at=task.created_at,
                reason="task found in the queue by its label",
            )
        )
        return
    if isinstance(lookup, Found):
        return  # no creation time: the adapter reports such a node as incompatible
    settled = cycle.world.settled_at.get(
        case.case_id, cycle.world.started_at + cycle.policy.submit_settle.total_seconds()
    )
    if seen.taken_at < settled:
        return  # a submission may still land: look again next cycle
    if case.cancel_requested:
        cycle.fail(case, FailureCategory.CANCELLED, "cancelled before it reached the queue")
        return
    cycle.record(
        AbandonAttempt(
            case_id=case.case_id,
            not_before=cycle.now,
            charged=False,
            reason="the task never reached the queue; submitting a new attempt",
        )
    )


def _active(cycle: Cycle, case: CaseView, seen: Seen) -> None:
    key = (case.case_id, case.attempt)
    lookup = find_task_by_label(seen.snapshot, case.label or "", created_at=case.task_created_at)
    if not isinstance(lookup, Found):  # same label and creation time: ids get reused
        _missing(cycle, case, key)
        return
    task = lookup.task
    cycle.missing.pop(key, None)
    if task.state in WAITING:
        _waiting(cycle, case, task)
    elif task.state in STARTED:
        _running(cycle, case, task, seen)
    else:
        _done(cycle, case, task)


def _missing(cycle: Cycle, case: CaseView, key: tuple[str, int]) -> None:
    if case.state is CaseState.KILLING:
        _end_killed(cycle, case, "the task is gone from the queue after our kill")
        return
    count = cycle.missing[key] = cycle.missing.get(key, 0) + 1
    if count < cycle.policy.missing_grace:
        return
    cycle.missing.pop(key, None)
    cycle.alarm(
        AlarmKind.TASK_VANISHED,
        f"task {case.task_id} of case {case.case_id} vanished from the queue",
        key=f"vanished:{case.case_id}#{case.attempt}",
        case=case,
    )
    cycle.lose(case, f"task {case.task_id} missing from {count} consecutive snapshots")


def _waiting(cycle: Cycle, case: CaseView, task: RemoteTask) -> None:
    if case.cancel_requested or case.state is CaseState.KILLING:
        _kill(cycle, case, task, case.kill_cause or KillCause.CANCEL, "cancelled by an operator")
        return
    if task.state == "held":  # e.g. its queue paused after a restart of the host's queue
        cycle.actions.append(Release(case.host or "", task.slot))


def _running(cycle: Cycle, case: CaseView, task: RemoteTask, seen: Seen) -> None:
    if case.state is CaseState.QUEUED:
        cycle.record(
            RecordStarted(
                case_id=case.case_id, attempt=case.attempt, started_at=task.start, node=task.node
            )
        )
    if case.state is CaseState.KILLING:
        _kill(cycle, case, task, case.kill_cause or KillCause.CANCEL, "")
    elif case.cancel_requested:
        _kill(cycle, case, task, KillCause.CANCEL, "cancelled by an operator")
    else:
        limit = timedelta(hours=case.timeout_hours) if case.timeout_hours else cycle.policy.timeout
        running_for = cycle.mono - _running_since(cycle, case, task, seen)
        if running_for > limit.total_seconds() and not cycle.timing_unsafe(case.host):
            _kill(cycle, case, task, KillCause.TIMEOUT, f"running longer than {limit}")


def _running_since(cycle: Cycle, case: CaseView, task: RemoteTask, seen: Seen) -> float:
    """When the task started, on our monotonic clock, worked out once per process.

    From the node's start time against the node's own clock read in the same round
    trip (no skew), so time spent unseen (an outage, the daemon down) counts too. Every
    other account of it (when we recorded seeing it run; the node's clock as it was
    before a jump of this cycle) can only make it later, never earlier: the latest wins,
    so a jump of either clock before this process first saw the task makes it patient,
    never hasty. Once carried over, later jumps of either clock change nothing.
    """
    key = (case.case_id, case.attempt)
    since = cycle.running_since.get(key)
    if since is None:
        mono, now = cycle.mono, cycle.now
        estimates = [mono]  # the node gave no start time: from when we saw it run
        if task.start is not None and seen.node_time is not None:
            elapsed = (seen.node_time - task.start).total_seconds()
            estimates = [seen.taken_at + seen.rtt / 2 - elapsed]
            before = cycle.offset_before_jump.get(case.host or "")
            if before is not None:  # the start as the node's clock read before it jumped
                estimates.append(min(mono, task.start.timestamp() - before))
        elif task.start is not None:
            estimates = [mono - (now - task.start).total_seconds()]
        if case.seen_running_at is not None:
            estimates.append(mono - (now - case.seen_running_at).total_seconds())
        since = cycle.running_since[key] = max(estimates)
    return since


def _done(cycle: Cycle, case: CaseView, task: RemoteTask) -> None:
    if task.result == "succeeded":
        if case.cancel_requested or case.kill_cause is KillCause.CANCEL:
            cycle.fail(case, FailureCategory.CANCELLED, "cancelled by an operator")
        else:
            cycle.record(
                RecordRemoteSuccess(
                    case_id=case.case_id,
                    attempt=case.attempt,
                    ended_at=task.end,
                    reason=task.detail or "",
                )
            )
    elif task.result in ("failed", "failed_to_start"):
        reason = (
            f"the simulation exited with code {task.exit_code}"
            + (f" ({task.detail})" if task.detail else "")
            if task.result == "failed"
            else f"the task could not be started: {task.detail}"
        )
        cycle.actions.append(FailWithLog(case.case_id, case.attempt, case.host or "", task, reason))
    elif task.result == "killed" and case.state is CaseState.KILLING:
        _end_killed(cycle, case, "the task was killed as asked")
    elif task.result == "timed_out":  # the host's own limit (ours is shorter: we missed it)
        reason = f"the host stopped the task at its time limit ({task.detail})"
        cycle.actions.append(FailWithLog(case.case_id, case.attempt, case.host or "", task,
                                         reason, FailureCategory.TIMEOUT))  # fmt: skip
    else:
        cause = "killed, but not by us" if task.result == "killed" else task.detail
        cycle.lose(case, f"task {task.id} ended remotely: {cause}")


def _retrieving(cycle: Cycle, case: CaseView) -> None:
    if case.cancel_requested:
        cycle.fail(case, FailureCategory.CANCELLED, "cancelled by an operator")
        return
    cycle.actions.append(Fetch(case.case_id, case.attempt, case.host or "", case.remote_dir or ""))


def _kill(cycle: Cycle, case: CaseView, task: RemoteTask, cause: KillCause, reason: str) -> None:
    key = (case.case_id, case.attempt)
    if case.state is not CaseState.KILLING:
        cycle.record(RequestKill(case_id=case.case_id, cause=cause, reason=reason))
    waited = cycle.mono - cycle.killing_since.setdefault(key, cycle.mono)
    timeout = cycle.policy.kill_confirm_timeout
    if waited > timeout.total_seconds() and not cycle.timing_unsafe(case.host):
        cycle.alarm(
            AlarmKind.KILL_UNCONFIRMED,
            f"kill of task {task.id} not confirmed after {timeout};"
            f" GPU slot {case.host}/{case.slot} quarantined",
            key=f"kill-unconfirmed:{case.case_id}#{case.attempt}",
            case=case,
        )
        cycle.fail(
            case, _KILL_OUTCOME[cause], "kill not confirmed; slot quarantined",
            quarantine_task_id=task.id,
        )  # fmt: skip
        return
    cycle.send_kill(f"{case.case_id}#{case.attempt}", case.host or "", task, case.case_id)


def _end_killed(cycle: Cycle, case: CaseView, reason: str) -> None:
    cycle.fail(case, _KILL_OUTCOME[case.kill_cause or KillCause.CANCEL], reason)
