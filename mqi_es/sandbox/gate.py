"""The node's front door: a TCP relay before the SSH server that can inject network faults.

Clients connect to the gate's port; every connection is relayed to the SSH server. Faults
are then plain TCP facts, as a client meets them on a real network:

* ``close()``: the port is closed (new connections are refused) and every open connection
  is reset; it also lifts a freeze and a cut. ``open(port)`` listens again on the same port.
* ``freeze()``: connections are accepted but no byte passes any more, in either direction,
  on new or existing connections (a hung host: no banner, no keepalive answers);
  ``thaw()`` lets the held bytes through again.
* ``cut_after(n)``: every connection is reset once ``n`` more bytes have gone from client to
  server (counted from this call for open connections, from the start for new ones): a
  mid-upload cut. ``cut_after(None)`` disarms it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

CHUNK = 65536


@dataclass(eq=False, slots=True)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    uploaded: int = 0
    closed: bool = False

    def reset(self) -> None:
        self.closed = True
        for writer in (self.client, self.server):
            writer.transport.abort()


class TcpGate:
    def __init__(self, backend_port: int, *, host: str = "127.0.0.1") -> None:
        self._host = host
        self._backend_port = backend_port
        self._listener: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._cut_after: int | None = None

    async def open(self, port: int = 0) -> int:
        """Listen on ``port`` (0: any free port) and return the port."""
        if self._listener is not None:
            raise RuntimeError("the gate is already open")
        self._listener = await asyncio.start_server(self._relay, self._host, port)
        return int(self._listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and reset every open connection."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for link in list(self._links):
            link.reset()
        self._links.clear()
        self._cut_after = None
        self._flowing.set()  # frozen relays wake up, see their link closed and end

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut_after(self, n_bytes: int | None) -> None:
        if n_bytes is not None and n_bytes < 0:
            raise ValueError("n_bytes must not be negative")
        self._cut_after = n_bytes
        for link in self._links:
            link.uploaded = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self._host, self._backend_port
            )
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, server_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, server_writer, link, upload=True),
                self._pump(server_reader, writer, link, upload=False),
            )
        finally:
            link.reset()
            self._links.discard(link)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        *,
        upload: bool,
    ) -> None:
        try:
            while data := await source.read(CHUNK):
                await self._flowing.wait()
                if link.closed:
                    return
                if upload and self._cut_after is not None:
                    room = self._cut_after - link.uploaded
                    if len(data) >= room:
                        sink.write(data[: max(room, 0)])
                        await sink.drain()
                        link.reset()
                        return
                    link.uploaded += len(data)
                sink.write(data)
                await sink.drain()
            with contextlib.suppress(OSError):
                sink.write_eof()
        except OSError:
            link.reset()
