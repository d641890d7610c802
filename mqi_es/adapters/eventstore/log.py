"""What every event store says about its log, in the same terms: its name, its state, its
rows, and the refusal of a log that cannot be read. Light: no store is imported here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mqi_es.core.errors import LogRefused

# The ledger's name: the views track their position in its log under this name.
LEDGER_NAME = "mqi"

# What a store's fence says when it refuses a former leader's save (``postgres``).
FENCE_MARK = "mqi fenced:"

LogRow = tuple[int, str, int, str, bytes]  # notification id, aggregate hex, version, topic, state


@dataclass(frozen=True, slots=True)
class LogState:
    """What a log holds, read without opening it for writing."""

    exists: bool
    head: int  # the notification id of its newest event (0: empty)
    log_id: str | None  # its identity (None: no log, or one recorded before identities)


class LogRows(Protocol):
    """The rows of a log in notification order: what the views are built from."""

    def after(self, position: int, limit: int, stop: int | None = None) -> list[LogRow]:
        """Up to ``limit`` rows with ``position < notification id <= stop``."""
        ...

    def by_ids(self, notification_ids: Iterable[int]) -> list[LogRow]:
        """The rows with these notification ids, oldest first."""
        ...

    def head(self) -> int:
        """The notification id of the newest event (0 for an empty log)."""
        ...

    def close(self) -> None: ...


def unreadable(where: str, exc: Exception, *, restore: str = "the event log") -> LogRefused:
    """The refusal of a log that cannot be read (``restore``: what to restore)."""
    return LogRefused(
        f"the event log {where} cannot be read ({exc}): it is damaged. Nothing was changed. "
        f"Stop the daemon and restore {restore} from your newest backup "
        "(docs/operations.md, 'Restoring the event log')"
    )


@runtime_checkable
class Fenceable(Protocol):
    """A recorder whose saves are refused once their leadership ``term`` is over."""

    term: int | None


def check_still_ours(state: LogState, where: str, log_id: str, views_position: int) -> None:
    """What a daemon checks of its log every cycle, whatever the store.

    :raises LogRefused: another log took its place, or it holds fewer events than the
        views have applied.
    """
    if state.log_id != log_id:
        raise stop_writing(where, f"now holds another log ({state.log_id or 'without identity'})")
    if state.head < views_position:
        raise stop_writing(
            where, f"lost events ({state.head}, fewer than the {views_position} applied)"
        )


def stop_writing(where: str, what: str) -> LogRefused:
    """Why a daemon stops at once: its log is not the one it was writing to any more."""
    return LogRefused(
        f"the event log {where} {what} while the daemon was writing to it: the daemon stops "
        "so that no fact is recorded where nobody reads it. Put the right log back "
        "(docs/operations.md, 'Restoring the event log') and start the daemon again"
    )
