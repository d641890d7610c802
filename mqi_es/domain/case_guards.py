"""The checks every verb of ``Case`` makes before it records anything (mixed into ``Case``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from mqi_es.core.errors import InvalidTransition
from mqi_es.core.states import CaseState


class CaseGuards:
    if TYPE_CHECKING:
        case_id: str
        state: CaseState
        attempt: int

    def _require(self, *states: CaseState, verb: str) -> None:
        if self.state not in states:
            raise InvalidTransition(f"cannot {verb} case {self.case_id}: it is {self.state}")

    def _require_attempt(self, attempt: int) -> None:
        if attempt != self.attempt:
            raise InvalidTransition(
                f"case {self.case_id} is on attempt {self.attempt}, not {attempt}"
            )


def require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times recorded in events must be timezone-aware")
