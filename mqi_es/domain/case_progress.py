"""How far a case's running simulation got (mixed into ``Case``): recorded each time it
reaches another tenth of its run, never once per output line (see ``core.run_progress``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventsourcing.domain import event

from mqi_es.core.errors import InvalidTransition
from mqi_es.core.states import CaseState
from mqi_es.domain.recorded import Recorded


class CaseProgress(Recorded):
    if TYPE_CHECKING:
        case_id: str
        state: CaseState
        attempt: int

    class ProgressReported(Recorded.Event):
        attempt: int
        done: int
        total: int

    def record_progress(self, *, attempt: int, done: int, total: int, actor: str) -> None:
        """Only of the current attempt while it runs, and only a count that makes sense."""
        if self.state is not CaseState.RUNNING or attempt != self.attempt:
            raise InvalidTransition(
                f"case {self.case_id} is {self.state} (attempt {self.attempt}): no progress of"
                f" attempt {attempt} to record"
            )
        if not 0 <= done <= total or total < 1:
            raise InvalidTransition(f"progress {done} of {total} makes no sense")
        self._progress_reported(attempt=attempt, done=done, total=total, actor=actor, reason="")

    @event(ProgressReported)
    def _progress_reported(
        self, attempt: int, done: int, total: int, actor: str, reason: str
    ) -> None:
        pass  # the views keep it; nothing the case decides depends on it
