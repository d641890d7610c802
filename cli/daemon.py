"""`mqi run`: the daemon's process: logging, the one-daemon lock, signals, the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from cli.bootstrap import Context
from mqi_es.config import check_config_environment
from mqi_es.errors import ConfigError
from mqi_es.logs import setup_logging
from mqi_es.remote_host import PueueHost
from mqi_es.runtime import Daemon

log = logging.getLogger("mqi.daemon")


def run_daemon(context: Context) -> int:
    """Run until SIGTERM or SIGINT; returns the exit code."""
    os.umask(0o077)  # everything the daemon creates (results, logs, data) is owner-only
    config = context.config
    settings = config.logging
    setup_logging(
        settings.path, level=settings.level, max_bytes=settings.max_bytes,
        backups=settings.backups,
    )  # fmt: skip
    for warning in context.loaded.warnings:
        log.warning("configuration: %s", warning)
    problems = check_config_environment(config)
    if problems:
        raise ConfigError("; ".join(problems))
    context.lock.acquire(user=context.actor)
    try:
        hosts = {
            host.name: PueueHost.from_config(host, results_globs=config.results.globs)
            for host in config.hosts
        }
        asyncio.run(_serve(Daemon(config, context.ledger, hosts)))
    finally:
        context.lock.release()
    return 0


async def _serve(daemon: Daemon) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await daemon.run(stop)
