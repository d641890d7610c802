"""The CaseName aggregate: a case name's claim on its ``name_key``.

Saved with the case it names, in one transaction, so a second folder whose name differs
from a registered case's only by Unicode normalisation (or by case, where a node folds
case) can never become a second case: its registration meets the claim and is refused,
even when two processes register both at the same moment.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import event

from mqi_es.core.ids import case_name_uuid
from mqi_es.domain.recorded import Recorded


class CaseName(Recorded):
    @staticmethod
    def create_id(key: str) -> UUID:
        return case_name_uuid(key)

    class Claimed(Recorded.Created):
        key: str
        case_id: str

    @event(Claimed)
    def __init__(self, key: str, case_id: str, actor: str, reason: str = "") -> None:
        self.key = key
        self.case_id = case_id
