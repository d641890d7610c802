"""Client <-> daemon messages of the stand-in: one JSON line each way per connection.

The client sends the parsed command (``{"cmd": "add", ...}``); the daemon answers with what
the real client would print: ``{"stdout": ..., "stderr": ..., "code": ...}``. Keeping all
formatting in the daemon keeps the client tiny (it starts once per remote command), and
this module free of asyncio for the same reason.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Request = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    stdout: str = ""
    stderr: str = ""
    code: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Reply:
        return cls(**json.loads(line))


class DaemonGone(ConnectionError):
    """Raised when the daemon accepted the request but closed without an answer."""


class SocketTaken(RuntimeError):
    """Raised when another daemon already answers on the socket."""


@contextmanager
def short_socket_path(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits ``sun_path`` (108 bytes), however deep the folder is.

    The folder is opened and reached through ``/proc/self/fd``: no ``chdir``, so it is safe
    in a process with threads.
    """
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def connect(path: Path) -> socket.socket:
    """Connect to the daemon; ``OSError`` (no socket file, refused) means it is not running."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with short_socket_path(path) as name:
            client.connect(name)
    except OSError:
        client.close()
        raise
    return client


def exchange(client: socket.socket, request: Request) -> Reply:
    """Send one request on a connected socket and read the answer."""
    with client:
        client.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    if not answer.endswith(b"\n"):
        raise DaemonGone("the daemon closed the connection without an answer")
    return Reply.decode(answer)
