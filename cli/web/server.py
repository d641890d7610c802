"""The dashboard on uvicorn: served by `mqi web` on its own, or beside the daemon in its
event loop (``web:`` in the configuration)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from cli.context import Context
from cli.web.app import create_app
from cli.web.auth import web_token
from cli.web.data import Dashboard
from mqi_es.config.rules import is_loopback
from mqi_es.core.errors import ConfigError

log = logging.getLogger("mqi.web")


class BoundServer(uvicorn.Server):
    """A server on a socket bound beforehand: a port taken is an error of ``web_server``,
    raised where it is called, not a ``sys.exit`` inside the event loop."""

    bound: socket.socket

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets or [self.bound])


def web_server(
    context: Context,
    host: str | None = None,
    port: int | None = None,
    *,
    kind: type[BoundServer] = BoundServer,
) -> BoundServer:
    """The dashboard of ``context`` on ``host``:``port`` (default: the ``web`` section's).

    :raises ConfigError: an address other than loopback without ``web.token_file``, a
        token file that cannot be read, or an address and port that cannot be listened on.
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
    token = web_token(token_file, context.config.database.data_dir)
    app = create_app(Dashboard(context), token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        bound = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"the dashboard cannot listen on {host}:{port}: {exc.strerror}") from None
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", server_header=False)  # fmt: skip
    server = kind(config)
    server.bound = bound
    return server


class BesideDaemon(BoundServer):
    """A server that leaves the signals to the daemon it runs beside."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_beside_daemon(server: BoundServer, stop: asyncio.Event) -> None:
    """Serve until ``stop``; a dashboard that fails is logged, the daemon goes on."""
    serving = asyncio.create_task(_contained(server))
    await asyncio.wait([serving, asyncio.create_task(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    server.should_exit = True
    try:
        await serving
    except (OSError, SystemExit) as exc:
        log.error("web: the dashboard could not be served: %r", exc)


async def _contained(server: BoundServer) -> None:
    try:
        await server.serve()
    except (OSError, SystemExit) as exc:  # uvicorn exits the process on some faults
        log.error("web: the dashboard stopped: %r", exc)
