"""What the watch-folder intake reports, recorded through the bus.

The intake (``mqi_es.adapters.watch.intake``) decides when a folder is a stable case; this
is its sink: a new case is registered (held at once if it cannot be sent as it is), a held
case that is stable again is released, a folder that can never be a case is refused once.
"""

from __future__ import annotations

import logging

from mqi_es.adapters.watch.case_dir import Fingerprint
from mqi_es.adapters.watch.reports import Arrival
from mqi_es.app.bus import MessageBus
from mqi_es.core.commands import DetectCase, HoldCase, RefuseEntry, RestabilizeCase
from mqi_es.core.errors import CaseNotFound
from mqi_es.core.ids import case_uuid, refusal_uuid
from mqi_es.core.states import CaseState

log = logging.getLogger("mqi.daemon")


class ArrivalRecorder:
    """The intake's sink (``IntakeSink``) and its memory of what it need not look at
    again. A report that cannot be recorded raises: the intake keeps the folder and
    reports it again later (it backs off and says so)."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._ledger = bus.ledger

    def is_known(self, name: str) -> bool:
        """A folder already registered (and not held) or refused: the intake skips it."""
        if self._ledger.knows(refusal_uuid(name)):
            return True
        if not self._ledger.knows(case_uuid(name)):
            return False
        return self._ledger.case(name).state is not CaseState.HELD  # held: keep watching

    def case_ready(self, arrival: Arrival) -> None:
        try:
            case = self._ledger.case(arrival.case_id)
        except CaseNotFound:
            self._register(
                arrival.case_id, arrival.file_count, arrival.total_bytes, arrival.digest, None
            )
            return
        if case.state is CaseState.HELD:
            restabilized = RestabilizeCase(
                case_id=arrival.case_id, file_count=arrival.file_count,
                total_bytes=arrival.total_bytes, fingerprint=arrival.digest,
                reason="stable again",
            )  # fmt: skip
            self._bus.execute(restabilized)
            log.info("case %s: stable again, released from hold", arrival.case_id)

    def case_refused(self, raw_name_repr: str, reason: str) -> None:
        self._bus.execute(RefuseEntry(name_repr=raw_name_repr, reason=reason))

    def case_held(self, name: str, reason: str, found: Fingerprint) -> None:
        try:
            case = self._ledger.case(name)
        except CaseNotFound:
            self._register(name, found.file_count, found.total_bytes, found.digest, reason)
        else:
            if case.state is CaseState.WAITING:
                self._bus.execute(HoldCase(case_id=name, reason=reason))

    def _register(
        self, name: str, files: int, size: int, digest: str, hold_reason: str | None
    ) -> None:
        """A new case (the bus refuses one whose name clashes with a registered case's)."""
        self._bus.execute(
            DetectCase(
                case_id=name, file_count=files, total_bytes=size, fingerprint=digest,
                hold_reason=hold_reason,
            )
        )  # fmt: skip
