"""A notice POSTed as JSON to an HTTP(S) receiver (Slack-style hooks, ntfy, a team's bot).

One request per send, standard library only, run in a worker thread. The outcome is a
``Delivered`` or ``NotDelivered`` value, never an exception: the caller records it and
retries later. Redirects are not followed (a 3xx is a failure the operator should see,
and following one would hand the bearer token to another host). The token file is read
at every send so a rotated token takes effect without a restart; the token never appears
in a detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import ssl
import threading
from pathlib import Path
from urllib.parse import urlsplit

from mqi_es.adapters.notify.secret_file import read_secret
from mqi_es.core.notices import Delivered, NotDelivered, Notice, webhook_body

GRACE_SECONDS = 5.0  # past the timeout, the whole call gives up (a receiver trickling bytes)
ANSWER_CHARS = 200  # of the receiver's body, in a NotDelivered detail
_READ_LIMIT = 4096  # bytes of an answer read at most: we only quote its start


class Webhook:
    """POST ``webhook_body(notice)`` to ``url``, with a bearer token if ``token_file``."""

    name = "webhook"

    def __init__(
        self, url: str, *, token_file: Path | None = None, timeout_seconds: float = 10.0
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url must be http:// or https:// with a host: {url!r}")
        if timeout_seconds <= 0:
            raise ValueError(f"webhook timeout_seconds must be positive: {timeout_seconds}")
        self.url = url
        self.token_file = token_file
        self.timeout_seconds = timeout_seconds
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def send(self, notice: Notice) -> Delivered | NotDelivered:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "mqi-communicator",
        }
        if self.token_file is not None:
            token = read_secret(self.token_file, "webhook token file", keep_spaces=False)
            if isinstance(token, NotDelivered):
                return token
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(webhook_body(notice)).encode()
        bound = self.timeout_seconds + GRACE_SECONDS
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._post, body, headers), bound)
        except TimeoutError:
            return NotDelivered(f"timed out after {bound:g} s")

    def _post(self, body: bytes, headers: dict[str, str]) -> Delivered | NotDelivered:
        """One request, blocking: the timeout bounds the connect and every read."""
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self.timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout_seconds)
        # Per-read timeouts do not bound a receiver that trickles bytes: shutting the socket
        # down ends this thread too, a second after the caller has stopped waiting for it.
        watchdog = threading.Timer(self.timeout_seconds + GRACE_SECONDS + 1, _shut, (conn,))
        watchdog.daemon = True
        try:
            conn.connect()
            watchdog.start()
            conn.request("POST", self._target, body=body, headers=headers)
            answer = conn.getresponse()
            if 200 <= answer.status < 300:
                return Delivered(f"HTTP {answer.status}")  # its body does not matter
            return NotDelivered(f"HTTP {answer.status}: {_one_line(_read_some(answer))}")
        except Exception as exc:  # everything the network or receiver can do: a value
            return NotDelivered(self._why(exc))
        finally:
            watchdog.cancel()
            conn.close()

    def _why(self, exc: Exception) -> str:
        match exc:
            case TimeoutError():
                return f"timed out after {self.timeout_seconds:g} s"
            case ConnectionRefusedError():
                return "connection refused"
            case socket.gaierror():
                return f"cannot resolve {self._host}"
            case ssl.SSLCertVerificationError():
                return f"TLS certificate not trusted: {exc.verify_message}"
            case ssl.SSLError():
                return f"TLS error: {exc.reason or exc}"
            case http.client.RemoteDisconnected() | ConnectionResetError():
                return "receiver closed the connection without answering"
            case http.client.HTTPException():
                return f"bad HTTP answer ({type(exc).__name__})"
            case OSError():
                return exc.strerror or str(exc) or type(exc).__name__
            case _:
                return f"{type(exc).__name__}: {exc}"


def _read_some(answer: http.client.HTTPResponse) -> str:
    """The start of the answer's body: enough to quote, never the whole of a huge one."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size < _READ_LIMIT:
            chunk = answer.read1(_READ_LIMIT - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (OSError, http.client.HTTPException):
        pass  # the status is the answer; the body only illustrates it
    return b"".join(chunks).decode("utf-8", errors="replace")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:ANSWER_CHARS] if flat else "(empty answer)"


def _shut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)
