"""The message bus: every fact is recorded through here, by its type.

``HANDLERS`` maps each command type (``mqi_es.core.commands``) to the ledger's method of
the same meaning; the bus adds the actor. Besides recording, the bus owns what follows
from a command being recorded or not:

- a command the ledger refuses (the state moved on meanwhile, e.g. an operator's command
  came first) is skipped, and the remote actions that depended on it are not started:
  the next cycle looks at the new state (``decide``);
- a command that fails otherwise (a full disk, a bug) is contained the same way and said
  once, not once per cycle;
- a case folder whose name clashes with a registered case's is recorded as refused;
- a case put on hold is watched again by the intake (``on_held``), so it is released
  once it is stable and sendable;
- the views are brought up to date after anything was recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from mqi_es.adapters.local.failpoints import failpoint
from mqi_es.adapters.local.metrics import DaemonMetrics
from mqi_es.adapters.local.repeats import Repeats
from mqi_es.app.ledger import Ledger
from mqi_es.app.ports import Views
from mqi_es.core.actions import Action, Decision
from mqi_es.core.commands import (
    AbandonAttempt,
    AcknowledgeAlarm,
    CancelCase,
    ClaimNames,
    ClearAlarm,
    Command,
    CompleteCase,
    DetectCase,
    FailCase,
    HoldCase,
    LiftQuarantine,
    MarkSlotBusy,
    MarkSlotFree,
    RaiseAlarm,
    RecordDelivery,
    RecordEnqueued,
    RecordFolderRemoved,
    RecordHostReachable,
    RecordHostUnavailable,
    RecordProgress,
    RecordRemoteSuccess,
    RecordSlotResumed,
    RecordStarted,
    RecordTaskRemoved,
    RecordUpload,
    RefuseEntry,
    RegisterHost,
    RegisterSlot,
    RequestKill,
    RestabilizeCase,
    RetryCase,
    SetCaseTimeout,
    StartSubmission,
    case_of,
    subject_of,
)
from mqi_es.core.errors import (
    AlarmNotFound,
    CaseNotFound,
    ConcurrentUpdate,
    Fenced,
    InvalidTransition,
    NameClash,
    SlotError,
)
from mqi_es.core.states import AlarmKind, FailureCategory

log = logging.getLogger("mqi.daemon")

HANDLERS: Mapping[type, Callable[..., Any]] = {
    RegisterHost: Ledger.register_host,
    RegisterSlot: Ledger.register_slot,
    RecordHostUnavailable: Ledger.record_host_unavailable,
    RecordHostReachable: Ledger.record_host_reachable,
    MarkSlotBusy: Ledger.mark_slot_busy,
    MarkSlotFree: Ledger.mark_slot_free,
    RecordSlotResumed: Ledger.record_slot_resumed,
    LiftQuarantine: Ledger.lift_quarantine,
    DetectCase: Ledger.detect_case,
    ClaimNames: Ledger.claim_names,
    RefuseEntry: Ledger.refuse_entry,
    HoldCase: Ledger.hold_case,
    RestabilizeCase: Ledger.restabilize_case,
    StartSubmission: Ledger.start_submission,
    RecordUpload: Ledger.record_upload,
    RecordEnqueued: Ledger.record_enqueued,
    RecordStarted: Ledger.record_started,
    RecordRemoteSuccess: Ledger.record_remote_success,
    CompleteCase: Ledger.complete_case,
    FailCase: Ledger.fail_case,
    AbandonAttempt: Ledger.abandon_attempt,
    RequestKill: Ledger.request_kill,
    CancelCase: Ledger.cancel_case,
    RetryCase: Ledger.retry_case,
    SetCaseTimeout: Ledger.set_case_timeout,
    RaiseAlarm: Ledger.raise_alarm,
    ClearAlarm: Ledger.clear_alarm,
    AcknowledgeAlarm: Ledger.acknowledge_alarm,
    RecordDelivery: Ledger.record_delivery,
    RecordTaskRemoved: Ledger.record_task_removed,
    RecordFolderRemoved: Ledger.record_folder_removed,
    RecordProgress: Ledger.record_progress,
}

# The ledger's answer that the state moved on: not an error, the next cycle sees why.
REFUSALS = (InvalidTransition, SlotError, ConcurrentUpdate, CaseNotFound, AlarmNotFound)


class MessageBus:
    """Records commands for ``actor`` in ``ledger``; ``views`` (if given) are brought up
    to date after each batch that recorded something."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        actor: str,
        views: Views | None = None,
        on_held: Callable[[str], None] = lambda case_id: None,
        metrics: DaemonMetrics | None = None,
    ) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.actor = actor
        self.views = views
        self.on_held = on_held
        self._repeats = Repeats(log)

    def execute(self, command: Command) -> Any:
        """Record one command and what follows from it, or raise what the ledger raised
        (for an operator, the refusal is the answer to show; for the intake, a reason to
        report the folder again later)."""
        try:
            result = HANDLERS[type(command)](self.ledger, **_fields(command), actor=self.actor)
        except NameClash as clash:
            if not isinstance(command, DetectCase):
                raise
            log.warning("refused case directory '%s': %s", clash.name, clash)
            return self.execute(RefuseEntry(name_repr=clash.name, reason=str(clash)))
        log.info("%s: %s", subject_of(command), describe(command))
        if self.metrics is not None:
            self.metrics.record(type(command).__name__, attempt_outcome(command))
        failpoint(f"after:{type(command).__name__}")
        if isinstance(command, ClaimNames):
            for clash in result:
                self._contained(
                    RaiseAlarm(
                        key=f"name-clash:{clash.name}", kind=AlarmKind.NAME_CLASH,
                        subject=f"case {clash.name}", message=str(clash), raised_at=None,
                        about_case=clash.name,
                    )
                )  # fmt: skip
        if isinstance(command, RaiseAlarm) and result is not None:
            log.error("ALARM %s: %s", command.subject, command.message)
        if isinstance(command, FailCase) and command.category is not FailureCategory.CANCELLED:
            log.error("ALARM case %s failed (%s): %s", command.case_id, command.category,
                      command.reason)  # fmt: skip
        if isinstance(command, HoldCase):
            self.on_held(command.case_id)
        return result

    def handle(self, commands: Iterable[Command]) -> set[str]:
        """Record each command, containing every refusal and failure; returns the case
        ids of the commands not recorded."""
        not_recorded: set[str] = set()
        recorded = False
        for command in commands:
            if self._contained(command):
                recorded = True
            elif (case_id := case_of(command)) is not None:
                not_recorded.add(case_id)
        if recorded and self.views is not None:
            self.views.catch_up()
        return not_recorded

    def decide(self, decision: Decision) -> list[Action]:
        """Record a decision's facts; returns its actions whose premise was recorded."""
        not_recorded = self.handle(decision.records)
        return [a for a in decision.actions if getattr(a, "case_id", None) not in not_recorded]

    def _contained(self, command: Command) -> bool:
        name = type(command).__name__
        try:
            self.execute(command)
        except REFUSALS as refused:
            log.info("%s: %s not recorded: %s", subject_of(command), name, refused)
            return False
        except Fenced:
            raise  # this daemon does not lead any more: nothing of it may go on
        except Exception as exc:
            self._repeats.failed(
                ("record", name), "%s: %s could not be recorded: %r", subject_of(command),
                name, exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return False
        self._repeats.ended(("record", name))
        return True


def attempt_outcome(command: Command) -> str | None:
    """How an attempt ended, if ``command`` ends one: completed, a failure's category, or
    given up (``retried``: lost by the infrastructure; ``not_sent``: it never ran)."""
    match command:
        case CompleteCase():
            return "completed"
        case FailCase(category=category):
            return category.value
        case AbandonAttempt(charged=charged):
            return "retried" if charged else "not_sent"
    return None


def _fields(command: Command) -> dict[str, Any]:
    return {f.name: getattr(command, f.name) for f in dataclasses.fields(command)}


def describe(command: Command) -> str:
    """One log line's worth of a command: its type and fields (not the log tail)."""
    shown = {k: v for k, v in _fields(command).items() if k not in ("case_id", "log_tail")}
    return f"{type(command).__name__} " + " ".join(f"{k}={_short(v)}" for k, v in shown.items())


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."
