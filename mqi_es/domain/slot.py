"""The Slot aggregate: one place on one host where a case runs, standing for one GPU.

A slot is held by at most one case attempt. Allocation is saved in the same transaction
as the case's ``SubmissionStarted``; a second writer holding a stale version of the slot
is refused by the store, so two processes can never hand one GPU to two cases.

Logs written before slots had their own name call this aggregate ``GpuSlot`` (module
``gpu_slot``), its ``name`` a ``group`` and ``Resumed`` ``GroupResumed``: those topics
resolve to the classes here, and ``Registered`` is upcast from its first version.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event
from eventsourcing.utils import register_topic

from mqi_es.core.errors import InvalidTransition, SlotUnavailable
from mqi_es.core.ids import slot_key, slot_uuid
from mqi_es.core.states import SlotState
from mqi_es.domain.recorded import Recorded


class Slot(Recorded):
    @staticmethod
    def create_id(host: str, name: str) -> UUID:
        return slot_uuid(host, name)

    class Registered(Recorded.Created):
        class_version = 2
        host: str
        name: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, object]) -> None:
            state["name"] = state.pop("group")

    @event(Registered)
    def __init__(self, host: str, name: str, actor: str, reason: str = "") -> None:
        self.host = host
        self.name = name
        self.state = SlotState.FREE
        self.case_id: str | None = None
        self.attempt: int | None = None
        self.task_id: int | None = None
        self.task_label: str | None = None
        self.task_created_at: datetime | None = None

    @property
    def key(self) -> str:
        return slot_key(self.host, self.name)

    class Allocated(Recorded.Event):
        case_id: str
        attempt: int

    def allocate(self, *, case_id: str, attempt: int, actor: str, reason: str = "") -> None:
        if self.state is not SlotState.FREE:
            holder = f", held by case {self.case_id}" if self.case_id else ""
            raise SlotUnavailable(f"GPU slot {self.key} is {self.state}{holder}")
        self._allocated(case_id=case_id, attempt=attempt, actor=actor, reason=reason)

    @event(Allocated)
    def _allocated(self, case_id: str, attempt: int, actor: str, reason: str) -> None:
        self.state = SlotState.ALLOCATED
        self.case_id = case_id
        self.attempt = attempt

    def is_held_by(self, case_id: str, attempt: int) -> bool:
        return (
            self.state in (SlotState.ALLOCATED, SlotState.QUARANTINED)
            and self.case_id == case_id
            and self.attempt == attempt
        )

    class Released(Recorded.Event):
        case_id: str
        attempt: int

    def release(self, *, case_id: str, attempt: int, actor: str, reason: str) -> None:
        if not (self.state is SlotState.ALLOCATED and self.is_held_by(case_id, attempt)):
            raise InvalidTransition(
                f"GPU slot {self.key} is not held by case {case_id} attempt {attempt}"
            )
        self._released(case_id=case_id, attempt=attempt, actor=actor, reason=reason)

    @event(Released)
    def _released(self, case_id: str, attempt: int, actor: str, reason: str) -> None:
        self._clear()

    class Quarantined(Recorded.Event):
        case_id: str
        attempt: int
        task_id: int | None
        task_label: str | None
        task_created_at: datetime | None

    def quarantine(
        self,
        *,
        task_id: int | None,
        task_label: str | None,
        task_created_at: datetime | None,
        actor: str,
        reason: str,
    ) -> None:
        """Keep the slot out of use: a task we asked to kill may still run on its GPU.

        The task is remembered by id, label and creation time: ids are reused, and the
        slot must never kill whatever task later gets the same id.
        """
        if self.state is not SlotState.ALLOCATED or self.case_id is None or self.attempt is None:
            raise InvalidTransition(f"GPU slot {self.key} is {self.state}: nothing to quarantine")
        self._quarantined(
            case_id=self.case_id,
            attempt=self.attempt,
            task_id=task_id,
            task_label=task_label,
            task_created_at=task_created_at,
            actor=actor,
            reason=reason,
        )

    @event(Quarantined)
    def _quarantined(
        self,
        case_id: str,
        attempt: int,
        task_id: int | None,
        task_label: str | None,
        task_created_at: datetime | None,
        actor: str,
        reason: str,
    ) -> None:
        self.state = SlotState.QUARANTINED
        self.task_id = task_id
        self.task_label = task_label
        self.task_created_at = task_created_at

    class QuarantineLifted(Recorded.Event):
        pass

    def lift_quarantine(self, *, actor: str, reason: str) -> None:
        if self.state is not SlotState.QUARANTINED:
            raise InvalidTransition(f"GPU slot {self.key} is {self.state}, not quarantined")
        self._quarantine_lifted(actor=actor, reason=reason)

    @event(QuarantineLifted)
    def _quarantine_lifted(self, actor: str, reason: str) -> None:
        self._clear()

    class BusyElsewhere(Recorded.Event):
        task_ids: list[int]

    def mark_busy(self, *, task_ids: list[int], actor: str, reason: str) -> None:
        """The slot runs tasks this daemon did not submit: do not allocate it."""
        if self.state is not SlotState.FREE:
            raise InvalidTransition(f"GPU slot {self.key} is {self.state}, not free")
        self._busy(task_ids=sorted(task_ids), actor=actor, reason=reason)

    @event(BusyElsewhere)
    def _busy(self, task_ids: list[int], actor: str, reason: str) -> None:
        self.state = SlotState.BUSY

    class FreedElsewhere(Recorded.Event):
        pass

    def mark_free(self, *, actor: str, reason: str) -> None:
        if self.state is not SlotState.BUSY:
            raise InvalidTransition(f"GPU slot {self.key} is {self.state}, not busy")
        self._freed(actor=actor, reason=reason)

    @event(FreedElsewhere)
    def _freed(self, actor: str, reason: str) -> None:
        self.state = SlotState.FREE

    class Resumed(Recorded.Event):
        pass

    def record_resumed(self, *, actor: str, reason: str) -> None:
        """The host was asked to start what it held in this slot again."""
        self._resumed(actor=actor, reason=reason)

    @event(Resumed)
    def _resumed(self, actor: str, reason: str) -> None:
        pass

    def _clear(self) -> None:
        self.state = SlotState.FREE
        self.case_id = None
        self.attempt = None
        self.task_id = None
        self.task_label = None
        self.task_created_at = None


_FORMER = "mqi_es.domain.gpu_slot:GpuSlot"
register_topic(_FORMER, Slot)
for _old, _new in (
    ("Registered", Slot.Registered), ("Allocated", Slot.Allocated),
    ("Released", Slot.Released), ("Quarantined", Slot.Quarantined),
    ("QuarantineLifted", Slot.QuarantineLifted), ("BusyElsewhere", Slot.BusyElsewhere),
    ("FreedElsewhere", Slot.FreedElsewhere), ("GroupResumed", Slot.Resumed),
):  # fmt: skip
    register_topic(f"{_FORMER}.{_old}", _new)
