"""The composition root: configuration in, ready-to-use parts out.

Commands ask this module for the ledger, the event feed and the views; nothing else
in ``cli`` knows how they are built. Parts are built on first use, so a command that
only reads views never pays for the event store's imports.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mqi_es.config import Config, LoadedConfig, load_config, resolve_config_path
from mqi_es.lock import DaemonLock
from mqi_es.store import LEDGER_NAME

if TYPE_CHECKING:
    from mqi_es.application import Ledger
    from projections.feed import EventFeed
    from projections.reader import ViewReader


def cli_actor() -> str:
    """The actor recorded for a command typed by an operator: their OS login."""
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"user:uid{os.getuid()}"


@dataclass
class Context:
    loaded: LoadedConfig
    actor: str = field(default_factory=cli_actor)

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def views_link(self) -> Path:
        return self.config.database.views_path

    @cached_property
    def lock(self) -> DaemonLock:
        return DaemonLock(self.config.database.path.parent / "mqi.lock")

    @cached_property
    def ledger(self) -> Ledger:
        from mqi_es.application import Ledger
        from mqi_es.store import sqlite_event_store_env

        fold_case = any(host.folds_case for host in self.config.hosts)
        return Ledger(sqlite_event_store_env(self.config.database.path), fold_case=fold_case)

    @cached_property
    def feed(self) -> EventFeed:
        from projections.feed import EventFeed

        return EventFeed(self.ledger)

    def views(self) -> ViewReader:
        """The current views, brought up to date first unless a daemon keeps them.

        With a daemon running, the daemon is their only writer and the reader shows
        them as they are (``lag()`` tells how far behind).
        """
        from projections import generations
        from projections.reader import ViewReader
        from projections.schema import is_current

        current = generations.current(self.views_link)
        stale = self.lag() or not current.exists() or not is_current(current)
        if stale and self.lock.holder() is None:
            self.catch_up()  # rebuilds views of another release's schema first
        return ViewReader(self.views_link, application_name=LEDGER_NAME)

    def catch_up(self) -> int:
        from projections.runner import catch_up, open_views

        store = open_views(self.views_link, self.feed)
        try:
            return catch_up(store, self.feed)
        finally:
            store.close()

    def lag(self) -> int:
        """Events in the log not yet in the views (read cheaply, without eventsourcing)."""
        return max(0, _log_head(self.config.database.path) - _views_position(self.views_link))


def load_context(config_option: str | None, environ: Mapping[str, str] = os.environ) -> Context:
    """Load the configuration named by ``--config`` or ``MQI_CONFIG`` (or the defaults)."""
    return Context(load_config(resolve_config_path(config_option, environ)))


def _log_head(path: Path) -> int:
    if not path.exists():
        return 0
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT MAX(rowid) FROM stored_events").fetchone()[0] or 0
    except sqlite3.OperationalError:  # no table yet
        return 0
    finally:
        connection.close()


def _views_position(link: Path) -> int:
    if not link.is_symlink():
        return 0
    target = link.parent / link.readlink()
    if not target.exists():
        return 0
    connection = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        row = connection.execute(
            "SELECT notification_id FROM tracking WHERE application_name = ?",
            (LEDGER_NAME,),
        ).fetchone()
        return row[0] if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()
