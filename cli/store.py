"""`mqi store copy --to CONFIG`: this configuration's log copied into the empty store that
CONFIG names (SQLite to PostgreSQL, or back for a backup), ids and order preserved, then
read back and compared row by row. Refused while a daemon writes the log."""

from __future__ import annotations

from pathlib import Path

from cli.context import Context
from mqi_es.adapters.eventstore.copy import Copied, copy_log
from mqi_es.config import load_config
from mqi_es.core.errors import LogRefused


def copy_store(context: Context, to: Path) -> Copied:
    """:raises LogRefused: a daemon writes the log, or the copy cannot be made."""
    from cli.status import leadership

    target = load_config(to).config.database
    if target.where == context.config.database.where:
        raise LogRefused(f"{to} names this very log ({target.where}): nothing to copy")
    holder = context.lock.holder()
    if holder is not None:
        raise LogRefused(f"a daemon writes this log ({holder.describe()}): stop it first, so "
                         "that the copy holds every event")  # fmt: skip
    led = leadership(context)
    if led is not None and led.standing is not None and led.standing.leader is not None:
        leader = led.standing.leader
        raise LogRefused(
            f"daemon {leader.name} leads this log (term {leader.term}): stop every daemon "
            "of it first, so that the copy holds every event"
        )
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("copying events", total=None)
        return copy_log(
            context.config.database, target,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
