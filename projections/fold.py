"""How each event changes the views: a fold over rows held in memory for one batch.

Rows hold stored values (text for states, integers for flags) except times, which stay
datetimes until the row is written (see ``ViewStore``). The rows of a batch are loaded
from the views file on first use, changed here, and
written back with the batch's tracking position in one transaction by ``ViewStore``.
Keeping the fold free of SQL keeps it fast (replay) and easy to read next to the
aggregates it mirrors; the property tests check both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Row = dict[str, Any]
Fields = dict[str, Any]  # an event's fields, as stored (see MsgspecMapper.state_from)
Loader = Callable[[str, str], Row | None]
HostCases = Callable[[str], Iterable[str]]


class Batch:
    """Rows touched by one batch of events, keyed by table and aggregate id (hex)."""

    def __init__(self, load: Loader, cases_on_host: HostCases) -> None:
        self._load = load
        self._cases_on_host = cases_on_host
        self.rows: dict[str, dict[str, Row]] = {table: {} for table in _TABLE_OF.values()}
        self.links: list[tuple[str, int]] = []

    def row(self, table: str, key: str) -> Row:
        rows = self.rows[table]
        row = rows.get(key)
        if row is None:
            row = self._load(table, key)
            if row is None:
                raise LookupError(f"no {table} row for aggregate {key}: events out of order?")
            rows[key] = row
        return row

    def active_cases_on(self, host: str) -> set[str]:
        """Case aggregate ids whose current attempt runs on ``host``."""
        cases = self.rows["cases"]
        found = {key for key in self._cases_on_host(host) if key not in cases}
        found.update(key for key, row in cases.items() if row["host"] == host)
        return found

    def apply(self, key: str, cls: type, event: Fields, notification_id: int) -> None:
        """Fold one event (its class and fields) of the aggregate ``key`` into its row."""
        try:
            fn, table, creates = HANDLERS[cls]
        except KeyError:
            raise LookupError(f"the views do not know event {cls.__qualname__}") from None
        if creates:
            row = self.rows[table][key] = {"aggregate_id": key}
        else:
            row = self.row(table, key)
        fn(self, row, event, notification_id)
        if table == "cases":  # `mqi history` finds a case's own events by these links too
            self.links.append((row["case_id"], notification_id))


Handler = Callable[[Batch, Row, Fields, int], None]
HANDLERS: dict[type, tuple[Handler, str, bool]] = {}
_TABLE_OF = {
    "Case": "cases", "Slot": "slots", "Host": "hosts", "Refusal": "refusals",
    "CaseName": "case_names", "EventLog": "event_log", "Alarm": "alarms",
    "Notification": "notifications", "CaseCleanup": "cases",
    "CaseProgress": "cases",
}  # fmt: skip


def on(event_class: type, *, creates: bool = False) -> Callable[[Handler], None]:
    table = _TABLE_OF[event_class.__qualname__.split(".")[0]]

    def register(fn: Handler) -> None:
        HANDLERS[event_class] = (fn, table, creates)

    return register
