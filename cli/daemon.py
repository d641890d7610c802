"""`mqi run`: the daemon's process: logging, the one-daemon lock, signals, the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from cli.bootstrap import Context
from mqi_es.config import check_config_environment
from mqi_es.errors import ConfigError
from mqi_es.logs import setup_logging
from mqi_es.remote_host import PueueHost
from mqi_es.runtime import Daemon
from projections.live import LiveViews

log = logging.getLogger("mqi.daemon")


def run_daemon(context: Context) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code."""
    settings = context.config.logging
    setup_logging(
        settings.path, level=settings.level, max_bytes=settings.max_bytes,
        backups=settings.backups,
    )  # fmt: skip
    for warning in context.loaded.warnings:
        log.warning("configuration: %s", warning)
    asyncio.run(_serve(context))
    return 0


async def _serve(context: Context) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serving(context, stop) as daemon:
        await daemon


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
        hosts = {
            host.name: PueueHost.from_config(host, results_globs=config.results.globs)
            for host in config.hosts
        }
        views = LiveViews(context.ledger, config.database.views_path)
        daemon = asyncio.create_task(Daemon(config, context.ledger, hosts, views).run(stop))
        try:
            yield daemon
        finally:
            stop.set()
            await daemon
    finally:
        context.lock.release()
