"""Views are only ever used with the log they were built from.

The views file records, beside its position in the log, the identity of that log (its
first event). Before anything reads the views or writes to the log, ``check_log`` compares
the two: a log that is missing, empty, another log, or shorter than the views is refused
with what happened and what to do, so that a lost log is never silently replaced by a new
one (the daemon would register and submit every folder again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mqi_es.adapters.eventstore.log import LogState
from mqi_es.core.errors import LogRefused
from projections import database
from projections.reader import damage_reported

_RESTORE = (
    "Restore events.sqlite from your newest backup (docs/operations.md, 'Restoring the "
    "event log'); nothing was changed"
)


@dataclass(frozen=True, slots=True)
class ViewsOrigin:
    """Where in which log the current views stand."""

    position: int  # notification id of the last event applied
    log_id: str | None  # None: built by a release that did not record it


DAMAGED = ViewsOrigin(position=-1, log_id=None)
"""Views that exist but cannot be read: they may have been built from any log."""


def views_origin(link: Path, *, application_name: str) -> ViewsOrigin | None:
    """The origin of the current views, or None when there are none yet.

    :raises ViewsUnreadable: the views file is damaged.
    """
    if not link.is_symlink():
        return None
    path = link.parent / link.readlink()
    if not path.exists() or not path.stat().st_size:
        return None
    connection = database.read_only(path)
    try:
        with damage_reported(path):
            return ViewsOrigin(database.tracked(connection, application_name), _log_id(connection))
    finally:
        connection.close()


def _log_id(connection: database.Connection) -> str | None:
    try:
        row = connection.execute("SELECT log_id FROM event_log").fetchone()
    except database.OperationalError as exc:
        if "no such table" in str(exc):
            return None  # views of an earlier release
        raise
    return row[0] if row else None


def check_log(
    log: LogState, views: ViewsOrigin | None, log_path: Path | str, views_path: Path, *,
    accept: bool = False,
) -> None:  # fmt: skip
    """Refuse a log that is not the one the views were built from. ``accept``: the
    operator vouches for this log (``mqi replay --accept-log``); a missing or empty one is
    refused even so, since nothing could be rebuilt from it.

    :raises LogRefused: with what happened and how to recover.
    """
    if views is None or views.position == 0:
        return  # no views yet: any log (or a new one) is fine
    if views is DAMAGED:
        if not log.exists or log.head == 0:
            state = "is missing" if not log.exists else "is empty"
            raise LogRefused(
                f"the event log {log_path} {state}, and the views ({views_path}) cannot be "
                f"read to tell what it held. {_RESTORE}"
            )
        return  # the views are rebuilt from this log
    built = f"the views ({views_path}) were built from {views.position} events"
    if views.log_id is not None:
        built += f" of log {views.log_id}"
    if not log.exists:
        raise LogRefused(
            f"the event log {log_path} is missing, but {built}. {_RESTORE}. Only to start "
            "over with an empty log on purpose: move the views away first"
        )
    if log.head == 0:
        raise LogRefused(f"the event log {log_path} is empty, but {built}. {_RESTORE}")
    if accept:
        return
    if views.log_id is not None and log.log_id != views.log_id:
        raise LogRefused(
            f"the event log {log_path} is another log (log {log.log_id or 'without identity'})"
            f" than the one {built}. {_RESTORE}; if this log is the right one, rebuild the "
            "views from it with `mqi replay --accept-log`"
        )
    if log.head < views.position:
        raise LogRefused(
            f"the event log {log_path} has {log.head} events, fewer than the {views.position} "
            f"the views were built from: it lost events or is an older copy. {_RESTORE}; if "
            "this older log is the one to keep, rebuild the views from it with "
            "`mqi replay --accept-log`"
        )
