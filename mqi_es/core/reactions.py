"""What to record once a remote action has an outcome. Pure, like the decision core.

Every outcome is one of: a result, a remote failure (the node said no), or unknown (we
could not ask, or could not read the answer). Unknown never records anything: the case
stays where it is and the next cycle looks again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from mqi_es.core.actions import FailWithLog, ReadProgress, Release, RemoveFolder, RemoveTasks
from mqi_es.core.commands import (
    AbandonAttempt,
    CompleteCase,
    FailCase,
    HoldCase,
    RecordFolderRemoved,
    RecordProgress,
    RecordSlotResumed,
    RecordTaskRemoved,
    RecordUpload,
)
from mqi_es.core.endings import infrastructure_loss
from mqi_es.core.ids import label_attempt
from mqi_es.core.outcome import Ok, RemoteFailure, Unknown, summary
from mqi_es.core.policy import Policy
from mqi_es.core.remote import LogTails
from mqi_es.core.run_progress import RunProgress, read_progress, worth_recording
from mqi_es.core.states import FailureCategory
from mqi_es.core.views import CaseView

LOG_TAIL_CHARS = 4_000  # what of a failed task's output goes into its Failed event


Digests = tuple[tuple[str, int, str], ...]  # (relative path, size, SHA-256 hex), by path


@dataclass(frozen=True, slots=True)
class Uploaded:
    """The case is on the node, checked there against the digests of what was read."""

    files: int
    bytes: int
    seconds: float
    digests: Digests = ()
    manifest_sha256: str = ""


@dataclass(frozen=True, slots=True)
class Unsendable:
    """The case cannot be sent as it is (content changed, a link outside it, ...)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """The results are here, each local copy checked against the node's digest."""

    files: int
    bytes: int
    results_dir: str
    digests: Digests = ()
    manifest_sha256: str = ""


@dataclass(frozen=True, slots=True)
class NothingToFetch:
    globs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unwritable:
    """The results are safe on the node but cannot be written here (a full disk, a folder
    in the way): no fact; fetched again later, with an alarm while it lasts."""

    reason: str


@dataclass(frozen=True, slots=True)
class Removed:
    """These tasks left the host's queue (those asked for that it did not remove: not)."""

    task_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Declined:
    """The host refused a housekeeping step (e.g. permission denied): tried again later."""

    reason: str


def after_task_removal(
    action: RemoveTasks, outcome: Removed | RemoteFailure | Unknown
) -> list[RecordTaskRemoved]:
    if not isinstance(outcome, Removed):
        return []
    gone = set(outcome.task_ids)
    return [
        RecordTaskRemoved(case_id=named[0], attempt=named[1], task_id=task.id)
        for task in action.tasks
        if task.id in gone and (named := label_attempt(task.label)) is not None
    ]


def after_folder_removal(
    action: RemoveFolder, outcome: Ok | RemoteFailure | Unknown
) -> list[RecordFolderRemoved]:
    if not isinstance(outcome, Ok):
        return []
    return [
        RecordFolderRemoved(
            case_id=action.case_id,
            host=action.host,
            folder=action.folder,
            reason=f"its retention on the node is over ({outcome.stdout})",
        )
    ]


def after_upload(
    case: CaseView, outcome: Uploaded | Unsendable | RemoteFailure | Unknown, now: datetime,
    policy: Policy,
) -> list[RecordUpload | HoldCase | AbandonAttempt | FailCase]:  # fmt: skip
    """``case`` as it is after its ``SubmissionStarted`` was recorded."""
    match outcome:
        case Uploaded(files=files, bytes=size, seconds=seconds):
            return [
                RecordUpload(
                    case_id=case.case_id,
                    attempt=case.attempt,
                    files=files,
                    bytes=size,
                    seconds=seconds,
                    digests=[list(d) for d in outcome.digests],
                    manifest_sha256=outcome.manifest_sha256,
                )
            ]
        case Unsendable(reason=reason):
            return [HoldCase(case_id=case.case_id, reason=reason)]
        case RemoteFailure():
            reason = f"upload refused by the node: {summary(outcome)}"
            return [infrastructure_loss(case, reason, now, policy)]  # fmt: skip
        case _:
            return []


def after_submit(
    case: CaseView, outcome: Ok | RemoteFailure | Unknown, now: datetime, policy: Policy
) -> list[AbandonAttempt | FailCase]:
    """The task id the host answered is not recorded here: the next snapshot finds the
    task by its label and records it with its ``created_at``, the same way a task submitted
    just before a crash is found. A refusal by the host loses the attempt."""
    if isinstance(outcome, RemoteFailure):
        reason = f"the host refused the task: {summary(outcome)}"
        return [infrastructure_loss(case, reason, now, policy)]
    return []


def after_fetch(
    case: CaseView, outcome: Fetched | NothingToFetch | Unwritable | RemoteFailure | Unknown
) -> list[CompleteCase | FailCase]:
    match outcome:
        case Fetched(files=files, bytes=size, results_dir=results_dir):
            return [
                CompleteCase(
                    case_id=case.case_id,
                    attempt=case.attempt,
                    files=files,
                    bytes=size,
                    results_dir=results_dir,
                    digests=[list(d) for d in outcome.digests],
                    manifest_sha256=outcome.manifest_sha256,
                )
            ]
        case NothingToFetch(globs=globs):
            reason = f"the task succeeded but produced no result file matching {list(globs)}"
            return [_failed(case.case_id, FailureCategory.CASE_FAILURE, reason)]
        case RemoteFailure():
            reason = f"results could not be read on the node: {summary(outcome)}"
            return [_failed(case.case_id, FailureCategory.INFRASTRUCTURE, reason)]
        case _:
            return []


def after_log(action: FailWithLog, outcome: LogTails | RemoteFailure | Unknown) -> list[FailCase]:
    """The task's failure is a fact from the snapshot; its log is only a detail, so the
    case fails whatever became of reading it."""
    if isinstance(outcome, LogTails):
        text = outcome.by_task.get(action.task.id)
        missing = f"(log unavailable: the host has no log of task {action.task.id})"
        tail = missing if text is None else text[-LOG_TAIL_CHARS:]
    elif isinstance(outcome, RemoteFailure):
        tail = f"(log unavailable: {summary(outcome)})"
    else:
        tail = f"(log unavailable: {outcome.reason})"
    return [
        FailCase(
            case_id=action.case_id,
            category=action.category,
            reason=action.reason,
            exit_code=action.task.exit_code,
            log_tail=tail,
        )
    ]


def after_release(
    action: Release, outcome: Ok | RemoteFailure | Unknown
) -> list[RecordSlotResumed]:
    if isinstance(outcome, Ok):
        return [
            RecordSlotResumed(
                host=action.host,
                slot=action.slot,
                reason="the slot's queue was paused while our task waited in it",
            )
        ]
    return []


def _failed(case_id: str, category: FailureCategory, reason: str) -> FailCase:
    return FailCase(case_id=case_id, category=category, reason=reason)


def after_progress(
    action: ReadProgress, outcome: LogTails | RemoteFailure | Unknown, pattern: re.Pattern[str]
) -> tuple[dict[str, RunProgress], list[RecordProgress]]:
    """How far each run got (to show now), and the readings that reach another tenth of
    their run (to record). A host that could not tell changes nothing."""
    if not isinstance(outcome, LogTails):
        return {}, []
    latest: dict[str, RunProgress] = {}
    records = []
    for run in action.runs:
        seen = read_progress(outcome.by_task.get(run.task.id, ""), pattern)
        if seen is None:
            continue
        latest[run.case_id] = seen
        if worth_recording(run.recorded, seen):
            records.append(RecordProgress(case_id=run.case_id, attempt=run.attempt,
                                          done=seen.done, total=seen.total))  # fmt: skip
    return latest, records
