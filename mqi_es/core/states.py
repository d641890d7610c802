"""The states a case, a GPU slot and a host can be in. Stdlib only.

The values are stored in the views and printed by the CLI, so they are part of the
public vocabulary: see docs/events.md for what each one means.
"""

from __future__ import annotations

from enum import StrEnum


class CaseState(StrEnum):
    WAITING = "waiting"  # registered, waiting for a free GPU slot (or for its retry backoff)
    HELD = "held"  # registered but held back (content changed, link outside the case, ...)
    SUBMITTING = "submitting"  # slot allocated, attempt started: upload and submission under way
    QUEUED = "queued"  # the remote task exists and waits in its slot's queue
    RUNNING = "running"  # the remote task runs
    KILLING = "killing"  # a kill was asked for (timeout or cancel), not yet confirmed
    RETRIEVING = "retrieving"  # the remote task succeeded, results are being fetched
    COMPLETED = "completed"  # terminal: results fetched
    FAILED = "failed"  # terminal: see FailureCategory

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_CASE_STATES

    @property
    def holds_slot(self) -> bool:
        return self in SLOT_HOLDING_CASE_STATES


TERMINAL_CASE_STATES = frozenset({CaseState.COMPLETED, CaseState.FAILED})
SLOT_HOLDING_CASE_STATES = frozenset(
    {CaseState.SUBMITTING, CaseState.QUEUED, CaseState.RUNNING, CaseState.KILLING}
)


class FailureCategory(StrEnum):
    CASE_FAILURE = "case_failure"  # the simulation itself failed (non-zero exit, failed to spawn)
    TIMEOUT = "timeout"  # ran longer than its timeout and was killed
    INFRASTRUCTURE = "infrastructure"  # lost, killed by others, could not be submitted; retryable
    CANCELLED = "cancelled"  # an operator cancelled it


class KillCause(StrEnum):
    TIMEOUT = "timeout"
    CANCEL = "cancel"


class SlotState(StrEnum):
    FREE = "free"
    ALLOCATED = "allocated"  # held by one of our cases
    BUSY = "busy"  # the slot runs tasks that this daemon did not submit
    QUARANTINED = "quarantined"  # a kill could not be confirmed: not reusable until it is


class HostState(StrEnum):
    """What the last status query of a host showed (recorded at changes only)."""

    UNKNOWN = "unknown"  # never polled yet
    REACHABLE = "reachable"  # answered with a status we could read
    UNREACHABLE = "unreachable"  # could not be reached (refused, timed out, connection lost)
    QUEUE_DOWN = "queue_down"  # reached, but its queue service did not answer
    UNREADABLE = "unreadable"  # answered with something we could not read
    INCOMPATIBLE = "incompatible"  # its queue software cannot be used safely (e.g. too old)


class AlarmKind(StrEnum):
    """What an alarm is about; docs/operations.md says what each means and what to do."""

    CASE_FAILED = "case_failed"  # a case ended failed (not cancelled): until retried or acked
    CASE_STALLED = "case_stalled"  # a case stays in one state longer than alarms.stall_minutes
    CASE_DUPLICATED = "case_duplicated"  # several remote tasks carry one attempt's label
    TASK_VANISHED = "task_vanished"  # a case's task left the queue without an outcome
    KILL_UNCONFIRMED = "kill_unconfirmed"  # a kill was not confirmed in time
    HOST_DOWN = "host_down"  # unreachable, queue service down or unreadable for too long
    HOST_INCOMPATIBLE = "host_incompatible"  # its queue software cannot be used safely
    SLOT_MISSING = "slot_missing"  # a configured slot does not exist on its host
    SLOT_QUARANTINED = "slot_quarantined"  # a task we could not kill may still hold the GPU
    STRAY_TASK = "stray_task"  # a task with our label that belongs to no live attempt
    RESULTS_UNWRITABLE = "results_unwritable"  # fetched results cannot be written here
    CLOCK_SKEW = "clock_skew"  # a node's clock is off ours by more than the bound
    CLOCK_JUMP = "clock_jump"  # this machine's or a node's clock jumped
    NAME_CLASH = "name_clash"  # a folder's name clashes with a registered case's
    CYCLE_OVERDUE = "cycle_overdue"  # the daemon's loop was held longer than allowed
    NODE_DISK_LOW = "node_disk_low"  # a node has less room than alarms.node_disk_free_gb


# Alarms that stand for a moment, not a lasting condition: they stay open until an operator
# acknowledges them (a failed case: or until it is retried), never cleared by absence.
STICKY_ALARMS = frozenset(
    {AlarmKind.CASE_FAILED, AlarmKind.TASK_VANISHED, AlarmKind.KILL_UNCONFIRMED,
     AlarmKind.CASE_DUPLICATED, AlarmKind.CLOCK_JUMP, AlarmKind.NAME_CLASH,
     AlarmKind.CYCLE_OVERDUE}
)  # fmt: skip


class AlarmState(StrEnum):
    OPEN = "open"  # raised, nobody has acknowledged it
    ACKNOWLEDGED = "acknowledged"  # an operator has seen it; its condition may still last
    CLEARED = "cleared"  # its condition ended (or, for a sticky alarm, it was dealt with)
