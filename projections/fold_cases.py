"""How the events of a case change its row of ``cases``."""

from __future__ import annotations

import json
import posixpath

from mqi_es.core.states import CaseState, FailureCategory
from mqi_es.domain import Case
from mqi_es.domain.case_cleanup import CaseCleanup
from mqi_es.domain.case_progress import CaseProgress
from projections.fold import Batch, Fields, Row, on

# --- cases -----------------------------------------------------------------------------

_CLEAR_ATTEMPT: Row = {
    "host": None, "slot": None, "label": None, "remote_dir": None, "task_id": None,
    "task_created_at": None, "cancel_requested": 0, "kill_cause": None, "started_at": None,
    "seen_running_at": None, "node": None,
}  # fmt: skip

# Progress belongs to an attempt: a new one starts from none (an ended one keeps how far it got).
_NO_PROGRESS: Row = {"progress_done": None, "progress_total": None, "progress_at": None}


def _touch(row: Row, event: Fields, state: CaseState | None = None) -> None:
    """``reason`` says why the case is where it is: a new state takes its event's reason
    (even none), other events only add theirs."""
    row["updated_at"] = event["timestamp"]
    if state is not None and state != row["state"]:
        row["state"] = state
        row["state_since"] = row["updated_at"]
        row["reason"] = event["reason"]
    elif event["reason"]:
        row["reason"] = event["reason"]


@on(Case.Detected, creates=True)
def _detected(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(_CLEAR_ATTEMPT)
    row.update(
        case_id=e["case_id"],
        state=CaseState.WAITING,
        arrival=nid,
        attempt=0,
        detected_at=e["timestamp"],
        updated_at=e["timestamp"],
        state_since=e["timestamp"],
        file_count=e["file_count"],
        total_bytes=e["total_bytes"],
        fingerprint=e["fingerprint"],
        not_before=None,
        timeout_hours=None,
        failure=None,
        exit_code=None,
        infra_failures=0,
        results_dir=None,
        reason=e["reason"],
        remote_folders=None,
        **_NO_PROGRESS,
    )


@on(Case.HeldBack)
def _held(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.HELD)
    row.update(_CLEAR_ATTEMPT)


@on(Case.Restabilized)
def _restabilized(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.WAITING)
    row.update(
        file_count=e["file_count"], total_bytes=e["total_bytes"], fingerprint=e["fingerprint"]
    )


@on(Case.SubmissionStarted)
def _submission_started(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.SUBMITTING)
    row.update(
        attempt=e["attempt"],
        host=e["host"],
        slot=e["slot"],
        label=e["label"],
        remote_dir=e["remote_dir"],
        not_before=None,
        started_at=None,
        seen_running_at=None,
        **_NO_PROGRESS,
    )
    folder = [e["host"], posixpath.dirname(e["remote_dir"])]
    folders = json.loads(row["remote_folders"] or "[]")
    if folder not in folders:
        row["remote_folders"] = json.dumps([*folders, folder])


@on(Case.Uploaded)
def _uploaded(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e)


@on(Case.TaskEnqueued)
def _enqueued(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.QUEUED)
    row.update(task_id=e["task_id"], task_created_at=e["created_at"])


@on(Case.TaskStarted)
def _started(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.RUNNING)
    row.update(started_at=e["started_at"], seen_running_at=e["timestamp"], node=e["node"])


@on(Case.RemoteSucceeded)
def _remote_succeeded(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.RETRIEVING)
    row["kill_cause"] = None


@on(Case.Completed)
def _completed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.COMPLETED)
    row.update(_CLEAR_ATTEMPT)
    row["results_dir"] = e["results_dir"]


@on(Case.Failed)
def _failed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.FAILED)
    row.update(_CLEAR_ATTEMPT)
    row.update(failure=e["category"], exit_code=e["exit_code"])
    if e["category"] == FailureCategory.INFRASTRUCTURE:
        row["infra_failures"] += 1


@on(Case.AttemptAbandoned)
def _abandoned(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.WAITING)
    row.update(_CLEAR_ATTEMPT)
    row["not_before"] = e["not_before"]
    if e["charged"]:
        row["infra_failures"] += 1


@on(Case.KillRequested)
def _kill_requested(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.KILLING)
    row["kill_cause"] = e["cause"]


@on(Case.CancelRequested)
def _cancel_requested(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e)
    row["cancel_requested"] = 1


@on(Case.RetryRequested)
def _retry_requested(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e, CaseState.WAITING)
    row.update(failure=None, exit_code=None, infra_failures=0, not_before=None)


@on(Case.TimeoutChanged)
def _timeout_changed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _touch(row, e)
    row["timeout_hours"] = e["hours"]


@on(CaseCleanup.TaskRemoved)
def _task_removed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    pass  # the case's history shows it; its state is the same


@on(CaseCleanup.FolderRemoved)
def _folder_removed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    folders = [
        f for f in json.loads(row["remote_folders"] or "[]") if f != [e["host"], e["folder"]]
    ]
    row["remote_folders"] = json.dumps(folders) if folders else None


@on(CaseProgress.ProgressReported)
def _progress_reported(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(progress_done=e["done"], progress_total=e["total"], progress_at=e["timestamp"])
