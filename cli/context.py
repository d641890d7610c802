"""What a command works with: its configuration, its actor, the checked log and the views.

Commands ask this module for the ledger, the event feed and the views; nothing else in
``cli`` knows how they are built (the daemon's parts come from ``mqi_es.bootstrap``). Parts
are built on first use, so a command that only reads views never pays for the event store's
imports.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from mqi_es.adapters.eventstore.log import LEDGER_NAME
from mqi_es.adapters.local.lock import DaemonLock, Holder
from mqi_es.adapters.local.progress import Live, live_file, read_live
from mqi_es.config import Config, LoadedConfig, load_config, resolve_config_path
from mqi_es.core.errors import MqiError
from mqi_es.core.states import CaseState
from mqi_es.core.views import CaseView

if TYPE_CHECKING:
    from mqi_es.adapters.eventstore.log import LogState
    from mqi_es.app.bus import MessageBus
    from mqi_es.app.ledger import Ledger
    from projections.feed import EventFeed
    from projections.guard import ViewsOrigin
    from projections.reader import ViewReader


class ViewsNotReady(MqiError):
    """Raised when a daemon holds the data folder but has not made its views yet."""


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
    accept_log: bool = False  # `mqi replay --accept-log`: the operator vouches for the log

    @property
    def config(self) -> Config:
        return self.loaded.config

    @property
    def views_link(self) -> Path:
        return self.config.database.views_path

    @cached_property
    def lock(self) -> DaemonLock:
        return DaemonLock(self.config.database.data_dir / "mqi.lock")

    @cached_property
    def ledger(self) -> Ledger:
        """The ledger, once the log is known to be the one the views were built from."""
        from mqi_es.adapters.eventstore import stores
        from mqi_es.app.ledger import Ledger
        from mqi_es.bootstrap import notice_plan

        self.verified_log()
        fold_case = any(host.folds_case for host in self.config.hosts)
        return Ledger(
            stores.environment(self.config.database), fold_case=fold_case,
            notices=notice_plan(self.config),
        )  # fmt: skip

    @cached_property
    def bus(self) -> MessageBus:
        """Records an operator's commands, as them."""
        from mqi_es.app.bus import MessageBus

        return MessageBus(self.ledger, actor=self.actor)

    @cached_property
    def feed(self) -> EventFeed:
        from projections.feed import EventFeed

        return EventFeed(self.ledger)

    def verified_log(self) -> tuple[LogState, ViewsOrigin | None]:
        """The log and where the views stand in it, refusing a log that is missing,
        damaged, empty, another or shorter than the views (unless ``accept_log``).

        :raises LogRefused: what happened, and how to restore the log.
        """
        from mqi_es.adapters.eventstore import stores
        from projections.guard import DAMAGED, check_log, views_origin
        from projections.reader import ViewsUnreadable

        # The views first: the log only grows after that, so a daemon recording meanwhile
        # can never make them look ahead of it.
        try:
            origin = views_origin(self.views_link, application_name=LEDGER_NAME)
        except ViewsUnreadable:
            origin = DAMAGED  # rebuilt from the log, if there is one to rebuild from
        log = stores.inspect(self.config.database)
        check_log(log, origin, self.config.database.where, self.views_link, accept=self.accept_log)
        return log, (None if origin is DAMAGED else origin)

    def views(self) -> ViewReader:
        """The current views, brought up to date first unless a daemon keeps them.

        With a daemon running, the daemon is their only writer (it also rebuilds views it
        cannot read) and the reader shows them as they are (``lag()`` tells how far
        behind); without one, views that lag, are damaged or of another release are
        brought up to date or rebuilt here first.
        """
        from projections import generations
        from projections.reader import ViewReader
        from projections.schema import is_current

        log, origin = self.verified_log()
        current = generations.current(self.views_link)
        behind = origin is None or origin.position < log.head
        stale = behind or not current.exists() or not is_current(current)
        holder = self.lock.holder()
        if stale and holder is None:
            self.catch_up()  # rebuilds damaged views, or another release's, first
        elif not current.exists() and holder is not None:
            raise ViewsNotReady(
                f"the daemon ({holder.describe()}) has not built its views yet (it is "
                "starting, or waiting for its event store): try again in a moment"
            )
        return ViewReader(self.views_link, application_name=LEDGER_NAME)

    def catch_up(self) -> int:
        """Bring the views up to date here, unless another writer (a daemon that just
        started, another command) is at it: then they are its to keep."""
        from projections.runner import catch_up, open_views
        from projections.writer_lock import WriterLock

        writer = WriterLock(self.views_link)
        if not writer.acquire(wait=False):
            return 0
        try:
            store = open_views(self.views_link, self.feed)
            try:
                return catch_up(store, self.feed)
            finally:
                store.close()
        finally:
            writer.release()

    def live(self) -> Live:
        """What the running daemon is doing now (nothing if none runs)."""
        return self.daemon()[1]

    def daemon(self) -> tuple[Holder | None, Live]:
        """Who holds the data folder (the running daemon, if any) and what it is doing."""
        holder = self.lock.holder()
        path = live_file(self.config.database.data_dir)
        return holder, read_live(path, holder.pid if holder else None)

    def lag(self) -> int:
        """Events in the log not yet in the views (read cheaply, without eventsourcing)."""
        log, origin = self.verified_log()
        return max(0, log.head - (origin.position if origin else 0))


def load_context(config_option: str | None, environ: Mapping[str, str] = os.environ) -> Context:
    """Load the configuration named by ``--config`` or ``MQI_CONFIG`` (or the defaults)."""
    return Context(load_config(resolve_config_path(config_option, environ)))


def with_live_progress(cases: Sequence[CaseView], live: Live) -> list[CaseView]:
    """The cases, each running one with its progress as the daemon last read it (the views
    hold only the last tenth recorded)."""
    return [
        msgspec.structs.replace(case, progress=live.runs[case.case_id])
        if case.state is CaseState.RUNNING and case.case_id in live.runs
        else case
        for case in cases
    ]
