"""The Refusal aggregate: a directory in the watch folder that can never be a case.

Its name is unsafe (path separators, control characters, not UTF-8, ...). Recording it
once, under an id derived from its printable form, lets the intake skip it ever after
instead of refusing it again on every scan.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import event

from mqi_es.core.ids import refusal_uuid
from mqi_es.domain.recorded import Recorded


class Refusal(Recorded):
    @staticmethod
    def create_id(name_repr: str) -> UUID:
        return refusal_uuid(name_repr)

    class Refused(Recorded.Created):
        name_repr: str

    @event(Refused)
    def __init__(self, name_repr: str, actor: str, reason: str) -> None:
        self.name_repr = name_repr
