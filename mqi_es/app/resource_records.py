"""The Ledger's records of the hosts and their GPU slots: registered, reachable or not,
busy with others' tasks, free, resumed, out of quarantine (mixed into ``Ledger``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from mqi_es.core.ids import host_uuid, slot_uuid
from mqi_es.core.states import HostState
from mqi_es.domain import Host, Slot

if TYPE_CHECKING:
    from uuid import UUID

    from mqi_es.domain.recorded import Recorded


class ResourceRecords:
    """``host``, ``slot``, ``knows`` and ``_commit`` are the Ledger's."""

    if TYPE_CHECKING:

        def host(self, name: str) -> Host: ...

        def slot(self, host: str, name: str) -> Slot: ...

        def knows(self, aggregate_id: UUID) -> bool: ...

        def _commit(self, *aggregates: Recorded | None) -> int | None: ...

    def register_host(self, name: str, address: str, *, actor: str) -> int | None:
        if self.knows(host_uuid(name)):
            return None
        return self._commit(Host(name=name, address=address, actor=actor))

    def register_slot(self, host: str, slot: str, *, actor: str) -> int | None:
        if self.knows(slot_uuid(host, slot)):
            return None
        return self._commit(Slot(host=host, name=slot, actor=actor))

    def record_host_unavailable(
        self, name: str, *, state: HostState, since: datetime, actor: str, reason: str
    ) -> int | None:
        host = self.host(name)
        if not host.record_unavailable(state=state, since=since, actor=actor, reason=reason):
            return None
        return self._commit(host)

    def record_host_reachable(
        self, name: str, *, at: datetime, actor: str, reason: str = ""
    ) -> int | None:
        host = self.host(name)
        if not host.record_reachable(at=at, actor=actor, reason=reason):
            return None
        return self._commit(host)

    def mark_slot_busy(
        self, host: str, slot: str, *, task_ids: list[int], actor: str, reason: str
    ) -> int | None:
        found = self.slot(host, slot)
        found.mark_busy(task_ids=task_ids, actor=actor, reason=reason)
        return self._commit(found)

    def mark_slot_free(self, host: str, slot: str, *, actor: str, reason: str) -> int | None:
        found = self.slot(host, slot)
        found.mark_free(actor=actor, reason=reason)
        return self._commit(found)

    def record_slot_resumed(self, host: str, slot: str, *, actor: str, reason: str) -> int | None:
        found = self.slot(host, slot)
        found.record_resumed(actor=actor, reason=reason)
        return self._commit(found)

    def lift_quarantine(self, host: str, slot: str, *, actor: str, reason: str) -> int | None:
        found = self.slot(host, slot)
        found.lift_quarantine(actor=actor, reason=reason)
        return self._commit(found)
