"""The Ledger: the command API over the event log.

One method per recorded fact. Each loads the aggregates it needs, lets them decide,
and saves every resulting event in ONE transaction (a case and its GPU slot together),
returning the notification id of the last event recorded (``None`` when the fact was
already known, which makes the commands safe to repeat).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import Mapper, PersistenceError, RecordConflictError

from mqi_es.adapters.eventstore.codec import MsgspecMapper
from mqi_es.adapters.eventstore.log import FENCE_MARK, LEDGER_NAME, Fenceable
from mqi_es.app.alarm_records import AlarmRecords
from mqi_es.app.notice_records import NoticePlan, NoticeRecords
from mqi_es.app.remote_records import RemoteRecords
from mqi_es.app.resource_records import ResourceRecords
from mqi_es.core.errors import CaseNotFound, ConcurrentUpdate, Fenced, NameClash, SlotNotFound
from mqi_es.core.ids import (
    case_name_uuid,
    case_uuid,
    event_log_uuid,
    host_uuid,
    name_key,
    refusal_uuid,
    slot_key,
    slot_uuid,
)
from mqi_es.core.notices import NoticeKind
from mqi_es.core.states import CaseState, FailureCategory, KillCause, SlotState
from mqi_es.domain import Case, CaseName, EventLog, Host, Refusal, Slot
from mqi_es.domain.recorded import Recorded


class Ledger(NoticeRecords, AlarmRecords, RemoteRecords, ResourceRecords, Application[UUID]):
    """Records what happened to cases, GPU slots, hosts, alarms and notifications."""

    name = LEDGER_NAME

    def __init__(
        self, env: Mapping[str, str], *, fold_case: bool = False, notices: NoticePlan | None = None
    ) -> None:
        """:param fold_case: case names that differ only in letter case are one name (a
        node's file system folds case). :param notices: what is told to whom (none: nothing
        is due)."""
        super().__init__(env=dict(env))
        self.fold_case = fold_case
        self.notices = notices or NoticePlan()
        self.term: int | None = None

    def lead(self, term: int) -> None:
        """Record every later fact under leadership ``term``: each event carries it, and
        the store refuses the save once another daemon holds a newer term (``Fenced``)."""
        if not isinstance(self.recorder, Fenceable):
            raise TypeError(f"{type(self.recorder).__name__} has no leadership terms")
        self.term = self.recorder.term = term
        assert isinstance(self.mapper, MsgspecMapper)
        self.mapper.term = term

    @property
    def log_id(self) -> str | None:
        """The log's identity, or None for a log that has none yet (see ``start_log``)."""
        try:
            log: EventLog = self.repository.get(event_log_uuid())
        except AggregateNotFoundError:
            return None
        return log.log_id

    def start_log(self) -> str:
        """The log's identity, recorded first if it has none (a new log, or one of an
        earlier release). Only the daemon starts a log: a read command never writes."""
        for _ in range(2):  # a second writer may record it at the same moment
            log_id = self.log_id
            if log_id is not None:
                return log_id
            started = EventLog(log_id=uuid4().hex, actor="daemon", reason="a new event log")
            try:
                self._commit(started)
            except ConcurrentUpdate:
                continue
            return started.log_id
        raise ConcurrentUpdate("the event log's identity could not be read")

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper()

    # --- reading aggregates ----------------------------------------------------------

    def case(self, case_id: str) -> Case:
        try:
            return self.repository.get(case_uuid(case_id))
        except AggregateNotFoundError:
            raise CaseNotFound(f"no case named {case_id!r} has been registered") from None

    def slot(self, host: str, name: str) -> Slot:
        try:
            return self.repository.get(slot_uuid(host, name))
        except AggregateNotFoundError:
            raise SlotNotFound(f"no GPU slot {slot_key(host, name)} is registered") from None

    def host(self, name: str) -> Host:
        return self.repository.get(host_uuid(name))

    def knows(self, aggregate_id: UUID) -> bool:
        return bool(self.recorder.select_events(aggregate_id, limit=1))

    def _commit(self, *aggregates: Recorded | None) -> int | None:
        try:
            recordings = self.save(*aggregates)
        except RecordConflictError:
            raise ConcurrentUpdate(
                "another process recorded a conflicting change first; nothing was saved"
            ) from None
        except PersistenceError as exc:
            if FENCE_MARK in str(exc):
                raise Fenced(
                    f"the leadership term {self.term} is over: another daemon leads this log "
                    "now; nothing was saved"
                ) from None
            raise
        return recordings[-1].notification.id if recordings else None

    # --- intake ----------------------------------------------------------------------

    def detect_case(
        self,
        case_id: str,
        *,
        file_count: int,
        total_bytes: int,
        fingerprint: str,
        actor: str,
        hold_reason: str | None = None,
    ) -> int | None:
        """Register a stable case directory; ``None`` if it was registered before.

        :raises NameClash: its name differs from a registered case's only in form.
        """
        if self.knows(case_uuid(case_id)):
            return None
        claim = self._claim(case_id, actor=actor)
        case = Case(
            case_id=case_id,
            file_count=file_count,
            total_bytes=total_bytes,
            fingerprint=fingerprint,
            actor=actor,
        )
        if hold_reason is not None:
            case.hold(actor=actor, reason=hold_reason)
        return self._commit(case, claim)

    def claim_names(self, case_ids: list[str], *, actor: str) -> list[NameClash]:
        """Claim the names of cases registered before names were claimed (or under another
        ``fold_case``), in one transaction; returns the clashes found among them."""
        claims: dict[str, CaseName] = {}
        clashes: list[NameClash] = []
        for case_id in case_ids:
            key = name_key(case_id, fold_case=self.fold_case)
            if key in claims:
                clashes.append(NameClash(case_id, claims[key].case_id))
                continue
            try:
                claim = self._claim(case_id, actor=actor)
            except NameClash as clash:
                clashes.append(clash)
                continue
            if claim is not None:
                claims[key] = claim
        self._commit(*claims.values())
        return clashes

    def _claim(self, case_id: str, *, actor: str) -> CaseName | None:
        """A new claim of the case's name key; None if this case holds it already.

        :raises NameClash: another case holds it.
        """
        key = name_key(case_id, fold_case=self.fold_case)
        try:
            holder: CaseName = self.repository.get(case_name_uuid(key))
        except AggregateNotFoundError:
            return CaseName(key=key, case_id=case_id, actor=actor)
        if holder.case_id != case_id:
            raise NameClash(case_id, holder.case_id)
        return None

    def refuse_entry(self, name_repr: str, *, reason: str, actor: str) -> int | None:
        """Record once that a watch-folder entry can never be a case."""
        if self.knows(refusal_uuid(name_repr)):
            return None
        return self._commit(Refusal(name_repr=name_repr, actor=actor, reason=reason))

    def hold_case(self, case_id: str, *, actor: str, reason: str) -> int | None:
        case = self.case(case_id)
        slot = self._slot_to_release(case)
        case.hold(actor=actor, reason=reason)
        self._release(slot, case, actor=actor, reason=reason)
        return self._commit(case, slot)

    def restabilize_case(
        self,
        case_id: str,
        *,
        file_count: int,
        total_bytes: int,
        fingerprint: str,
        actor: str,
        reason: str,
    ) -> int | None:
        case = self.case(case_id)
        case.restabilize(
            file_count=file_count,
            total_bytes=total_bytes,
            fingerprint=fingerprint,
            actor=actor,
            reason=reason,
        )
        return self._commit(case)

    # --- submission ------------------------------------------------------------------

    def start_submission(
        self, case_id: str, *, host: str, slot: str, remote_base_dir: str, actor: str
    ) -> int | None:
        """Allocate the GPU slot and start the case's next attempt, atomically."""
        case = self.case(case_id)
        found = self.slot(host, slot)
        case.start_submission(host=host, slot=slot, remote_base_dir=remote_base_dir, actor=actor)
        found.allocate(case_id=case_id, attempt=case.attempt, actor=actor)
        return self._commit(case, found)

    def record_upload(
        self,
        case_id: str,
        *,
        attempt: int,
        files: int,
        bytes: int,
        seconds: float,
        digests: list[list[str | int]],
        manifest_sha256: str,
        actor: str,
    ) -> int | None:
        case = self.case(case_id)
        case.record_upload(
            attempt=attempt, files=files, bytes=bytes, seconds=seconds, digests=digests,
            manifest_sha256=manifest_sha256, actor=actor,
        )  # fmt: skip
        return self._commit(case)

    def record_enqueued(
        self,
        case_id: str,
        *,
        attempt: int,
        task_id: int,
        created_at: datetime,
        actor: str,
        reason: str = "",
    ) -> int | None:
        case = self.case(case_id)
        case.record_enqueued(
            attempt=attempt, task_id=task_id, created_at=created_at, actor=actor, reason=reason
        )
        return self._commit(case)

    def record_started(
        self, case_id: str, *, attempt: int, started_at: datetime | None, actor: str,
        node: str | None = None,
    ) -> int | None:  # fmt: skip
        case = self.case(case_id)
        case.record_started(attempt=attempt, started_at=started_at, actor=actor, node=node)
        return self._commit(case)

    # --- endings ---------------------------------------------------------------------

    def record_remote_success(
        self, case_id: str, *, attempt: int, ended_at: datetime | None, actor: str,
        reason: str = "",
    ) -> int | None:  # fmt: skip
        """The task succeeded: its GPU is released now, while the results are fetched."""
        case = self.case(case_id)
        slot = self._slot_to_release(case)
        case.record_remote_success(attempt=attempt, ended_at=ended_at, actor=actor, reason=reason)
        self._release(slot, case, actor=actor, reason="remote task succeeded")
        return self._commit(case, slot)

    def complete_case(
        self,
        case_id: str,
        *,
        attempt: int,
        files: int,
        bytes: int,
        results_dir: str,
        digests: list[list[str | int]],
        manifest_sha256: str,
        actor: str,
    ) -> int | None:
        case = self.case(case_id)
        host = case.host
        case.complete(
            attempt=attempt, files=files, bytes=bytes, results_dir=results_dir, digests=digests,
            manifest_sha256=manifest_sha256, actor=actor,
        )  # fmt: skip
        notice = self._case_notice(
            NoticeKind.CASE_COMPLETED, case_id, attempt, case.modified_on, state="completed",
            host=host, reason=f"{files} result file(s), {bytes} bytes, in {results_dir}",
        )  # fmt: skip
        return self._commit(case, *self._due(notice, actor=actor))

    def fail_case(
        self,
        case_id: str,
        *,
        category: FailureCategory,
        actor: str,
        reason: str,
        exit_code: int | None = None,
        log_tail: str = "",
        quarantine_task_id: int | None = None,
        quarantine: bool = False,
    ) -> int | None:
        """End a case as failed and free its GPU slot, or quarantine the slot if the
        remote task may still be running on it."""
        case = self.case(case_id)
        slot = self._slot_to_release(case)
        label, created_at = case.label, case.task_created_at  # the case forgets them now
        host = case.host
        case.fail(
            category=category, actor=actor, reason=reason, exit_code=exit_code, log_tail=log_tail
        )
        alarm = self._failure_alarm(case, category, reason, actor=actor)
        notices = self._alarm_notices(alarm, raised=True, actor=actor)
        if category is not FailureCategory.CANCELLED:  # an operator's own doing
            notice = self._case_notice(
                NoticeKind.CASE_FAILED, case_id, case.attempt, case.modified_on, reason=reason,
                state="failed", category=category.value, host=host, log_tail=log_tail,
            )  # fmt: skip
            notices += self._due(notice, actor=actor)
        if slot is not None and quarantine:
            slot.quarantine(
                task_id=quarantine_task_id,
                task_label=label,
                task_created_at=created_at,
                actor=actor,
                reason=reason,
            )
        else:
            self._release(slot, case, actor=actor, reason=reason)
        return self._commit(case, slot, alarm, *notices)

    def abandon_attempt(
        self,
        case_id: str,
        *,
        not_before: datetime | None,
        charged: bool,
        actor: str,
        reason: str,
    ) -> int | None:
        case = self.case(case_id)
        slot = self._slot_to_release(case)
        case.abandon_attempt(not_before=not_before, charged=charged, actor=actor, reason=reason)
        self._release(slot, case, actor=actor, reason=reason)
        return self._commit(case, slot)

    # --- operator and policy commands ------------------------------------------------

    def request_kill(
        self, case_id: str, *, cause: KillCause, actor: str, reason: str
    ) -> int | None:
        case = self.case(case_id)
        case.request_kill(cause=cause, actor=actor, reason=reason)
        return self._commit(case)

    def cancel_case(self, case_id: str, *, actor: str, reason: str) -> int | None:
        """Cancel a case: at once if nothing runs for it, else ask the daemon to kill it."""
        case = self.case(case_id)
        if case.state in (CaseState.WAITING, CaseState.HELD):
            return self.fail_case(
                case_id, category=FailureCategory.CANCELLED, actor=actor, reason=reason
            )
        case.request_cancel(actor=actor, reason=reason)
        return self._commit(case)

    def retry_case(self, case_id: str, *, actor: str, reason: str) -> int | None:
        case = self.case(case_id)
        alarm = self._failure_alarm_to_clear(case, actor=actor)
        case.retry(actor=actor, reason=reason)
        return self._commit(case, alarm, *self._alarm_notices(alarm, raised=False, actor=actor))

    def set_case_timeout(
        self, case_id: str, *, hours: float | None, actor: str, reason: str
    ) -> int | None:
        case = self.case(case_id)
        case.set_timeout(hours=hours, actor=actor, reason=reason)
        return self._commit(case)

    # --- helpers ---------------------------------------------------------------------

    def _slot_to_release(self, case: Case) -> Slot | None:
        """The slot this case's current attempt holds, read before the case lets go of it."""
        if case.host is None or case.slot is None:
            return None
        slot = self.slot(case.host, case.slot)
        return slot if slot.is_held_by(case.case_id, case.attempt) else None

    @staticmethod
    def _release(slot: Slot | None, case: Case, *, actor: str, reason: str) -> None:
        if slot is not None and slot.state is SlotState.ALLOCATED:
            slot.release(case_id=case.case_id, attempt=case.attempt, actor=actor, reason=reason)
