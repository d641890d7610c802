"""What housekeeping removed of a case on its nodes (mixed into ``Case``): an ended task
that left its host's queue, a folder that left a node. Each removal is a fact of the
case's history; neither is allowed while the case may still need it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.domain import event

from mqi_es.core.errors import InvalidTransition
from mqi_es.core.states import CaseState
from mqi_es.domain.recorded import Recorded

# The states in which the current attempt's task is still needed (its outcome to come).
_NEEDS_TASK = frozenset(
    {CaseState.SUBMITTING, CaseState.QUEUED, CaseState.RUNNING, CaseState.KILLING}
)


class CaseCleanup(Recorded):
    if TYPE_CHECKING:
        case_id: str
        state: CaseState
        attempt: int
        remote_folders: set[tuple[str, str]]

    class TaskRemoved(Recorded.Event):
        attempt: int
        task_id: int

    def record_task_removed(self, *, attempt: int, task_id: int, actor: str, reason: str) -> None:
        if attempt == self.attempt and self.state in _NEEDS_TASK:
            raise InvalidTransition(f"case {self.case_id} still needs its task {task_id}")
        self._task_removed(attempt=attempt, task_id=task_id, actor=actor, reason=reason)

    @event(TaskRemoved)
    def _task_removed(self, attempt: int, task_id: int, actor: str, reason: str) -> None:
        pass

    class FolderRemoved(Recorded.Event):
        host: str
        folder: str

    def record_folder_removed(self, *, host: str, folder: str, actor: str, reason: str) -> None:
        """Only a folder this case recorded, once it ended."""
        if not self.state.is_terminal:
            raise InvalidTransition(f"case {self.case_id} is {self.state}: it may need {folder}")
        if (host, folder) not in self.remote_folders:
            raise InvalidTransition(f"{folder} on {host} is not a folder of case {self.case_id}")
        self._folder_removed(host=host, folder=folder, actor=actor, reason=reason)

    @event(FolderRemoved)
    def _folder_removed(self, host: str, folder: str, actor: str, reason: str) -> None:
        self.remote_folders.discard((host, folder))
