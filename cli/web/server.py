"""The dashboard on uvicorn: served by `mqi web` on its own, or beside the daemon in its
event loop (``web:`` in the configuration)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from cli.context import Context
from cli.web.app import create_app
from cli.web.auth import web_token
from cli.web.data import Dashboard
from mqi_es.config.rules import is_loopback
from mqi_es.core.errors import ConfigError

log = logging.getLogger("mqi.web")


def web_server(
    context: Context,
    host: str | None = None,
    port: int | None = None,
    *,
    kind: type[uvicorn.Server] = uvicorn.Server,
) -> uvicorn.Server:
    """The dashboard of ``context`` on ``host``:``port`` (default: the ``web`` section's).

    :raises ConfigError: an address other than loopback without ``web.token_file``, or a
        token file that cannot be read.
    """
    settings = context.config.web
    token_file = settings.token_file if settings else None
    host = host or (settings.host if settings else "127.0.0.1")
    port = port or (settings.port if settings else 8080)
    if token_file is None and not is_loopback(host):
        raise ConfigError(
            f"{host} is reachable from other machines: set web.token_file (a token you keep) "
            "to listen there"
        )
    token = web_token(token_file, context.config.database.path.parent)
    app = create_app(Dashboard(context), token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", server_header=False)  # fmt: skip
    return kind(config)


class BesideDaemon(uvicorn.Server):
    """A server that leaves the signals to the daemon it runs beside."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_beside_daemon(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Serve until ``stop``; a dashboard that cannot listen is logged, the daemon goes on."""
    serving = asyncio.create_task(server.serve())
    await asyncio.wait([serving, asyncio.create_task(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    server.should_exit = True
    try:
        await serving
    except (OSError, SystemExit) as exc:
        log.error("web: the dashboard could not be served: %r", exc)
