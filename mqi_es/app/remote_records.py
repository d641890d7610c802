"""The Ledger's records of what a case did and left on its nodes beside its lifecycle: how
far its run got, what housekeeping removed (mixed into ``Ledger``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mqi_es.domain import Case
    from mqi_es.domain.recorded import Recorded


class RemoteRecords:
    """``case`` and ``_commit`` are the Ledger's."""

    if TYPE_CHECKING:

        def case(self, case_id: str) -> Case: ...

        def _commit(self, *aggregates: Recorded | None) -> int | None: ...

    def record_task_removed(
        self, case_id: str, *, attempt: int, task_id: int, actor: str, reason: str
    ) -> int | None:
        case = self.case(case_id)
        case.record_task_removed(attempt=attempt, task_id=task_id, actor=actor, reason=reason)
        return self._commit(case)

    def record_folder_removed(
        self, case_id: str, *, host: str, folder: str, actor: str, reason: str
    ) -> int | None:
        case = self.case(case_id)
        case.record_folder_removed(host=host, folder=folder, actor=actor, reason=reason)
        return self._commit(case)

    def record_progress(
        self, case_id: str, *, attempt: int, done: int, total: int, actor: str
    ) -> int | None:
        case = self.case(case_id)
        case.record_progress(attempt=attempt, done=done, total=total, actor=actor)
        return self._commit(case)
