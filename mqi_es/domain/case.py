"""The Case aggregate: one proton-therapy case directory, from detection to its end.

Public verb methods check that the command makes sense in the current state and raise
``InvalidTransition`` otherwise; private ``@event`` methods only assign, because they run
again on every replay. Time values are arguments: nothing here reads a clock.
"""

from __future__ import annotations

import posixpath
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from mqi_es.core.errors import InvalidTransition
from mqi_es.core.ids import case_uuid, task_label
from mqi_es.core.states import CaseState, FailureCategory, KillCause
from mqi_es.domain.case_cleanup import CaseCleanup
from mqi_es.domain.case_guards import CaseGuards, require_aware
from mqi_es.domain.case_progress import CaseProgress
from mqi_es.domain.recorded import Recorded

_REMOTE_STATES = frozenset({CaseState.QUEUED, CaseState.RUNNING})


class Case(CaseCleanup, CaseProgress, CaseGuards):
    @staticmethod
    def create_id(case_id: str) -> UUID:
        return case_uuid(case_id)

    # --- detection -------------------------------------------------------------------

    class Detected(Recorded.Created):
        case_id: str
        file_count: int
        total_bytes: int
        fingerprint: str

    @event(Detected)
    def __init__(
        self, case_id: str, file_count: int, total_bytes: int, fingerprint: str, actor: str,
        reason: str = "",
    ) -> None:  # fmt: skip
        self.case_id = case_id
        self.state = CaseState.WAITING
        self.file_count = file_count
        self.total_bytes = total_bytes
        self.fingerprint = fingerprint
        self.attempt = 0
        self.host: str | None = None
        self.slot: str | None = None
        self.label: str | None = None
        self.remote_dir: str | None = None
        self.task_id: int | None = None
        self.task_created_at: datetime | None = None
        self.not_before: datetime | None = None
        self.timeout_hours: float | None = None
        self.cancel_requested = False
        self.kill_cause: KillCause | None = None
        self.failure: FailureCategory | None = None
        self.infra_failures = 0
        self.remote_folders: set[tuple[str, str]] = set()  # (host, folder) not removed yet

    class HeldBack(Recorded.Event):
        pass

    def hold(self, *, actor: str, reason: str) -> None:
        """Hold the case back (content changed, link outside the case, ...)."""
        self._require(CaseState.WAITING, CaseState.SUBMITTING, CaseState.HELD, verb="hold")
        self._hold(actor=actor, reason=reason)

    @event(HeldBack)
    def _hold(self, actor: str, reason: str) -> None:
        self.state = CaseState.HELD
        self._clear_attempt()

    class Restabilized(Recorded.Event):
        file_count: int
        total_bytes: int
        fingerprint: str

    def restabilize(
        self, *, file_count: int, total_bytes: int, fingerprint: str, actor: str, reason: str
    ) -> None:
        """The held case is stable again with this content: it may be sent."""
        self._require(CaseState.HELD, verb="release a hold on")
        self._restabilize(
            file_count=file_count, total_bytes=total_bytes, fingerprint=fingerprint,
            actor=actor, reason=reason,
        )  # fmt: skip

    @event(Restabilized)
    def _restabilize(
        self, file_count: int, total_bytes: int, fingerprint: str, actor: str, reason: str
    ) -> None:
        self.state = CaseState.WAITING
        self.file_count = file_count
        self.total_bytes = total_bytes
        self.fingerprint = fingerprint

    # --- submission ------------------------------------------------------------------

    class SubmissionStarted(Recorded.Event):
        class_version = 2
        attempt: int
        host: str
        slot: str
        label: str
        remote_dir: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["slot"] = state.pop("group")  # slots were called groups

    def start_submission(
        self, *, host: str, slot: str, remote_base_dir: str, actor: str, reason: str = ""
    ) -> None:
        """Begin the next attempt on a GPU slot (saved together with the slot's allocation).

        Each attempt gets its own remote folder, so a retry never mixes with the files
        of an earlier attempt that may still be on the node.
        """
        self._require(CaseState.WAITING, verb="submit")
        attempt = self.attempt + 1
        self._start_submission(
            attempt=attempt, host=host, slot=slot, label=task_label(self.case_id, attempt),
            remote_dir=posixpath.join(remote_base_dir, self.case_id, f"attempt-{attempt}"),
            actor=actor, reason=reason,
        )  # fmt: skip

    @event(SubmissionStarted)
    def _start_submission(
        self, attempt: int, host: str, slot: str, label: str, remote_dir: str, actor: str,
        reason: str,
    ) -> None:  # fmt: skip
        self.state = CaseState.SUBMITTING
        self.attempt = attempt
        self.host = host
        self.slot = slot
        self.label = label
        self.remote_dir = remote_dir
        self.not_before = None
        self.remote_folders.add((host, posixpath.dirname(remote_dir)))

    class Uploaded(Recorded.Event):
        """The case is on the node, checked there: ``digests`` lists (relative path, size,
        SHA-256) of every file as it was read and sent; ``manifest_sha256`` is the digest
        of the manifest holding them."""

        class_version = 2
        attempt: int
        files: int
        bytes: int
        seconds: float
        digests: list[list[str | int]]
        manifest_sha256: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state.update(digests=[], manifest_sha256="")  # recorded before digests were

    def record_upload(
        self, *, attempt: int, files: int, bytes: int, seconds: float,
        digests: list[list[str | int]], manifest_sha256: str, actor: str,
    ) -> None:  # fmt: skip
        self._require(CaseState.SUBMITTING, verb="record an upload for")
        self._require_attempt(attempt)
        self._uploaded(
            attempt=attempt, files=files, bytes=bytes, seconds=seconds, digests=digests,
            manifest_sha256=manifest_sha256, actor=actor, reason="",
        )  # fmt: skip

    @event(Uploaded)
    def _uploaded(
        self, attempt: int, files: int, bytes: int, seconds: float,
        digests: list[list[str | int]], manifest_sha256: str, actor: str, reason: str,
    ) -> None:  # fmt: skip
        pass

    class TaskEnqueued(Recorded.Event):
        attempt: int
        task_id: int
        created_at: datetime

    def record_enqueued(
        self, *, attempt: int, task_id: int, created_at: datetime, actor: str, reason: str = ""
    ) -> None:
        """The remote task of this attempt exists (added by us, or found again by its label)."""
        self._require(CaseState.SUBMITTING, verb="record a remote task for")
        self._require_attempt(attempt)
        require_aware(created_at)
        self._enqueued(
            attempt=attempt, task_id=task_id, created_at=created_at, actor=actor, reason=reason
        )

    @event(TaskEnqueued)
    def _enqueued(
        self, attempt: int, task_id: int, created_at: datetime, actor: str, reason: str
    ) -> None:
        self.state = CaseState.QUEUED
        self.task_id = task_id
        self.task_created_at = created_at

    class TaskStarted(Recorded.Event):
        class_version = 2
        attempt: int
        started_at: datetime | None
        node: str | None  # where the host ran it, when it says (a Slurm cluster's node)

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["node"] = None  # recorded before hosts told where

    def record_started(
        self, *, attempt: int, started_at: datetime | None, actor: str, node: str | None = None
    ) -> None:
        self._require(CaseState.QUEUED, verb="record the start of")
        self._require_attempt(attempt)
        self._started(attempt=attempt, started_at=started_at, node=node, actor=actor, reason="")

    @event(TaskStarted)
    def _started(
        self, attempt: int, started_at: datetime | None, node: str | None, actor: str, reason: str
    ) -> None:
        self.state = CaseState.RUNNING

    # --- endings ---------------------------------------------------------------------

    class RemoteSucceeded(Recorded.Event):
        attempt: int
        ended_at: datetime | None

    def record_remote_success(
        self, *, attempt: int, ended_at: datetime | None, actor: str, reason: str = ""
    ) -> None:
        """The remote task finished with success: its GPU is free, results are to be fetched.

        Also while a timeout kill is pending: the task finished before the kill reached it,
        and its results are as good as any.
        """
        self._require(*_REMOTE_STATES, CaseState.KILLING, verb="record the success of")
        self._require_attempt(attempt)
        self._remote_succeeded(attempt=attempt, ended_at=ended_at, actor=actor, reason=reason)

    @event(RemoteSucceeded)
    def _remote_succeeded(
        self, attempt: int, ended_at: datetime | None, actor: str, reason: str
    ) -> None:
        self.state = CaseState.RETRIEVING
        self.kill_cause = None

    class Completed(Recorded.Event):
        """The results are here: ``digests`` lists (relative path, size, SHA-256) of each
        result file, each checked against the node's own digest of it."""

        class_version = 2
        attempt: int
        files: int
        bytes: int
        results_dir: str
        digests: list[list[str | int]]
        manifest_sha256: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state.update(digests=[], manifest_sha256="")  # recorded before digests were

    def complete(
        self, *, attempt: int, files: int, bytes: int, results_dir: str,
        digests: list[list[str | int]], manifest_sha256: str, actor: str,
    ) -> None:  # fmt: skip
        self._require(CaseState.RETRIEVING, verb="complete")
        self._require_attempt(attempt)
        self._completed(
            attempt=attempt, files=files, bytes=bytes, results_dir=results_dir,
            digests=digests, manifest_sha256=manifest_sha256, actor=actor, reason="",
        )  # fmt: skip

    @event(Completed)
    def _completed(
        self, attempt: int, files: int, bytes: int, results_dir: str,
        digests: list[list[str | int]], manifest_sha256: str, actor: str, reason: str,
    ) -> None:  # fmt: skip
        self.state = CaseState.COMPLETED
        self._clear_attempt()

    class Failed(Recorded.Event):
        attempt: int
        category: str
        exit_code: int | None
        log_tail: str

    def fail(
        self,
        *,
        category: FailureCategory,
        actor: str,
        reason: str,
        exit_code: int | None = None,
        log_tail: str = "",
    ) -> None:
        """End the case as failed. Refused on a finished case."""
        if self.state.is_terminal:
            raise InvalidTransition(f"case {self.case_id} is already {self.state}")
        self._failed(
            attempt=self.attempt,
            category=category.value,
            exit_code=exit_code,
            log_tail=log_tail,
            actor=actor,
            reason=reason,
        )

    @event(Failed)
    def _failed(
        self,
        attempt: int,
        category: str,
        exit_code: int | None,
        log_tail: str,
        actor: str,
        reason: str,
    ) -> None:
        self.state = CaseState.FAILED
        self.failure = FailureCategory(category)
        if category == FailureCategory.INFRASTRUCTURE:
            self.infra_failures += 1
        self._clear_attempt()

    class AttemptAbandoned(Recorded.Event):
        attempt: int
        not_before: datetime | None
        charged: bool

    def abandon_attempt(
        self, *, not_before: datetime | None, charged: bool, actor: str, reason: str
    ) -> None:
        """Give up the current attempt; a new one follows after ``not_before``.

        ``charged``: the infrastructure did something to the task (killed it, lost it), which
        counts against the case's attempt budget. An attempt whose task never reached the
        queue is not charged, so an unreachable node can never use up a case's attempts.
        """
        self._require(
            CaseState.SUBMITTING,
            *_REMOTE_STATES,
            CaseState.KILLING,
            CaseState.RETRIEVING,
            verb="abandon the attempt of",
        )
        if not_before is not None:
            require_aware(not_before)
        self._abandoned(
            attempt=self.attempt,
            not_before=not_before,
            charged=charged,
            actor=actor,
            reason=reason,
        )

    @event(AttemptAbandoned)
    def _abandoned(
        self, attempt: int, not_before: datetime | None, charged: bool, actor: str, reason: str
    ) -> None:
        self.state = CaseState.WAITING
        self.not_before = not_before
        if charged:
            self.infra_failures += 1
        self._clear_attempt()

    # --- operator and policy commands ------------------------------------------------

    class KillRequested(Recorded.Event):
        attempt: int
        cause: str

    def request_kill(self, *, cause: KillCause, actor: str, reason: str) -> None:
        self._require(*_REMOTE_STATES, verb="kill")
        self._kill_requested(attempt=self.attempt, cause=cause.value, actor=actor, reason=reason)

    @event(KillRequested)
    def _kill_requested(self, attempt: int, cause: str, actor: str, reason: str) -> None:
        self.state = CaseState.KILLING
        self.kill_cause = KillCause(cause)

    class CancelRequested(Recorded.Event):
        pass

    def request_cancel(self, *, actor: str, reason: str) -> None:
        """Ask the daemon to cancel a case that has (or may have) a remote task."""
        if self.state.is_terminal:
            raise InvalidTransition(
                f"case {self.case_id} is already {self.state}: nothing to cancel"
            )
        if self.cancel_requested:
            raise InvalidTransition(f"a cancel of case {self.case_id} is already pending")
        self._cancel_requested(actor=actor, reason=reason)

    @event(CancelRequested)
    def _cancel_requested(self, actor: str, reason: str) -> None:
        self.cancel_requested = True

    class RetryRequested(Recorded.Event):
        pass

    def retry(self, *, actor: str, reason: str) -> None:
        """Give a failed case a new attempt (with a fresh infrastructure budget)."""
        if self.state is not CaseState.FAILED:
            raise InvalidTransition(
                f"case {self.case_id} is {self.state}: only a failed case can be retried"
            )
        self._retry_requested(actor=actor, reason=reason)

    @event(RetryRequested)
    def _retry_requested(self, actor: str, reason: str) -> None:
        self.state = CaseState.WAITING
        self.failure = None
        self.infra_failures = 0
        self.not_before = None

    class TimeoutChanged(Recorded.Event):
        hours: float | None

    def set_timeout(self, *, hours: float | None, actor: str, reason: str) -> None:
        if hours is not None and hours <= 0:
            raise InvalidTransition("a timeout must be a positive number of hours")
        if self.state.is_terminal:
            raise InvalidTransition(f"case {self.case_id} is already {self.state}")
        self._timeout_changed(hours=hours, actor=actor, reason=reason)

    @event(TimeoutChanged)
    def _timeout_changed(self, hours: float | None, actor: str, reason: str) -> None:
        self.timeout_hours = hours

    # --- helpers ---------------------------------------------------------------------

    def _clear_attempt(self) -> None:
        # The current view must not keep a GPU or task of an attempt that is over;
        # the history keeps them in the events above.
        self.host = self.slot = self.label = self.remote_dir = None
        self.task_id = None
        self.task_created_at = None
        self.cancel_requested = False
        self.kill_cause = None
