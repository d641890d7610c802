"""`mqi run`: the daemon's process: logging, the one-daemon lock, signals, the event loop.

Signals: SIGTERM and SIGINT stop the daemon cleanly. SIGHUP re-reads the configuration:
if the file loads and its folders can be used, the daemon stops cleanly and starts again
in the same process (same pid, for systemd's ``ExecReload``) on the new configuration,
recovering every case from the log exactly as after any restart; if it does not, the error
is logged and the daemon goes on with the configuration it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable

from cli.context import Context, load_context
from mqi_es.adapters.eventstore import stores
from mqi_es.adapters.local.logs import setup_logging
from mqi_es.adapters.local.systemd import Systemd
from mqi_es.app.leadership import Leadership
from mqi_es.app.ledger import Ledger
from mqi_es.bootstrap import build_daemon, leadership
from mqi_es.config import check_config_environment
from mqi_es.config.schema import PostgresDatabase
from mqi_es.core.errors import ConfigError, MqiError, StoreUnreachable
from mqi_es.runtime import SHUTDOWN_GRACE_SECONDS
from projections.live import LiveViews

log = logging.getLogger("mqi.daemon")


def run_daemon(context: Context, config_option: str | None = None) -> int:
    """Run until SIGTERM or SIGINT (SIGHUP: again, on the re-read configuration); returns
    the exit code. ``config_option`` is the ``--config`` value, to re-read the same file."""
    # A SIGHUP before the event loop handles it must not kill the daemon (the default).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = context.config.logging
    setup_logging(
        settings.path, level=settings.level, max_bytes=settings.max_bytes,
        backups=settings.backups,
    )  # fmt: skip
    for warning in context.loaded.warnings:
        log.warning("configuration: %s", warning)
    if asyncio.run(_serve(context, config_option)):
        log.info("SIGHUP: starting again on the re-read configuration")
        logging.shutdown()
        # Nothing is lost in between: every case is recovered from the log at start-up.
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606
    return 0


async def _serve(context: Context, config_option: str | None) -> bool:
    """Serve until stopped; True if stopped to start again on a re-read configuration."""
    stop = asyncio.Event()
    reload = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reread, config_option, stop, reload)
    async with serving(context, stop) as daemon:
        await daemon
    return reload.is_set()


def _reread(config_option: str | None, stop: asyncio.Event, reload: asyncio.Event) -> None:
    """SIGHUP: restart on the configuration file as it is now, if it can be used."""
    try:
        fresh = load_context(config_option)
        problems = check_config_environment(fresh.config)
        if problems:
            raise ConfigError("; ".join(problems))
    except MqiError as exc:
        log.error("SIGHUP: the configuration was not reloaded, the daemon goes on as it was: %s",
                  exc)  # fmt: skip
        return
    log.info("SIGHUP: the configuration loads; stopping cleanly to start again with it")
    reload.set()
    stop.set()


@contextlib.asynccontextmanager
async def serving(context: Context, stop: asyncio.Event) -> AsyncIterator[asyncio.Task[None]]:
    """The daemon of ``context`` running on this event loop, holding the data folder's
    lock, until ``stop`` is set (or the block is left: then it is stopped the same way).

    :raises ConfigError: the watch folder or a local folder cannot be used.
    :raises AlreadyRunning: another daemon holds the data folder.
    """
    config = context.config
    problems = check_config_environment(config)
    if problems:
        raise ConfigError("; ".join(problems))
    context.lock.acquire(user=context.actor)
    try:
        web = _web_beside(context, stop)  # its errors (a port taken) come before any work
        systemd = Systemd()  # the process's: READY once, STOPPING when the process stops
        if isinstance(config.database, PostgresDatabase):
            daemon = asyncio.create_task(_serve_shared(context, stop, systemd))
        else:
            ledger = context.ledger  # SQLite makes its tables as the log is opened
            views = LiveViews(ledger, config.database.views_path)
            daemon = asyncio.create_task(_lead(context, ledger, views, stop, systemd))
        try:
            yield daemon
        finally:
            stop.set()
            try:
                await daemon
            finally:
                systemd.stopping()
            if web is not None:
                await web
    finally:
        context.lock.release()


async def _lead(
    context: Context,
    ledger: Ledger,
    views: LiveViews,
    stop: asyncio.Event,
    systemd: Systemd,
    *,
    grace: Callable[[], float] | None = None,
) -> None:
    """Run the daemon on ``views`` (it closes them when it stops) until ``stop``."""
    log_file = stores.guard(context.config.database, ledger.start_log())
    daemon = build_daemon(
        context.config, ledger, views, systemd=systemd,
        check_log=lambda: log_file.verify(views.position()),
    )  # fmt: skip
    await (daemon.run(stop) if grace is None else daemon.run(stop, grace))


async def _serve_shared(context: Context, stop: asyncio.Event, systemd: Systemd) -> None:
    """A shared log: once its server answers, lead or stand by until ``stop``."""
    if not await _store_ready(context, stop):
        return
    ledger = context.ledger
    leader = leadership(context.config, ledger)
    assert leader is not None
    await _lead_or_stand_by(context, ledger, leader, stop, systemd)


async def _store_ready(context: Context, stop: asyncio.Event) -> bool:
    """The store's tables made and its log checked, waiting (with backoff) while its server
    cannot be reached; False if stopped meanwhile. A server down at start-up is no reason
    to exit: nothing is known, so nothing is concluded."""
    delay, said = 1.0, False
    while not stop.is_set():
        try:
            stores.prepare(context.config.database)
            context.verified_log()
            return True
        except StoreUnreachable as exc:
            if not said:
                log.warning("%s: waiting for it", exc)
                said = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 30.0)
    return False


async def _lead_or_stand_by(
    context: Context, ledger: Ledger, leader: Leadership, stop: asyncio.Event, systemd: Systemd
) -> None:
    """Stand by, views following the shared log, until the lease is ours; then lead (a
    daemon started afresh, recovering every case from the log) until it is not."""
    link = context.config.database.views_path
    standby: list[LiveViews] = []  # the views while standing by (the daemon's while leading)

    def follow() -> int:
        if not standby:
            standby.append(LiveViews(ledger, link))
        return standby[0].catch_up()

    async def lead(term: int, leading: asyncio.Event) -> None:
        ledger.lead(term)
        views = standby.pop() if standby else LiveViews(ledger, link)
        # Stopped with the process: actions in flight may end; leadership lost: another
        # daemon may act on the same cases, so they are cut at once.
        await _lead(context, ledger, views, leading, systemd,
                    grace=lambda: SHUTDOWN_GRACE_SECONDS if stop.is_set() else 0.0)  # fmt: skip

    try:
        await leader.run(stop, lead, follow=follow, alive=systemd.cycle_completed)
    finally:
        for views in standby:
            views.close()


def _web_beside(context: Context, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """The dashboard in the daemon's event loop, when the configuration has ``web:``."""
    if context.config.web is None:
        return None
    from cli.web.server import BesideDaemon, serve_beside_daemon, web_server

    server = web_server(context, kind=BesideDaemon)
    log.info("web: serving the dashboard on http://%s:%d/", server.config.host, server.config.port)
    return asyncio.create_task(serve_beside_daemon(server, stop), name="web")
