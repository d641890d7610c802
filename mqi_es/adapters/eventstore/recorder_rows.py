"""Reading a log through its recorder's public API, whatever the store.

``select_notifications`` and ``max_notification_id`` are all an eventsourcing
``ApplicationRecorder`` promises; any store that has one can feed the views this way.
A store may offer a faster reader of its own (SQLite does: ``sqlite.SqliteLogRows``).
"""

from __future__ import annotations

from collections.abc import Iterable

from eventsourcing.persistence import ApplicationRecorder, PersistenceError

from mqi_es.adapters.eventstore.log import LogRow, unreadable


class RecorderRows:
    """The rows of the log kept by ``recorder``, oldest first."""

    def __init__(self, recorder: ApplicationRecorder, *, where: str) -> None:
        self._recorder = recorder
        self._where = where

    def after(self, position: int, limit: int, stop: int | None = None) -> list[LogRow]:
        try:
            notifications = self._recorder.select_notifications(
                position, limit, stop, inclusive_of_start=False
            )
        except PersistenceError as exc:
            raise unreadable(self._where, exc) from None
        return [
            (n.id, n.originator_id.hex, n.originator_version, n.topic, n.state)
            for n in notifications
        ]

    def by_ids(self, notification_ids: Iterable[int]) -> list[LogRow]:
        """The rows with these notification ids, oldest first (one read per run of
        consecutive ids)."""
        rows: list[LogRow] = []
        for first, last in _runs(sorted(set(notification_ids))):
            rows += self.after(first - 1, last - first + 1, stop=last)
        return rows

    def head(self) -> int:
        try:
            return self._recorder.max_notification_id() or 0
        except PersistenceError as exc:
            raise unreadable(self._where, exc) from None

    def close(self) -> None:
        """Nothing of its own to close: the recorder is the ledger's."""


def _runs(ids: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for nid in ids:
        if runs and runs[-1][1] == nid - 1:
            runs[-1] = (runs[-1][0], nid)
        else:
            runs.append((nid, nid))
    return runs
