"""Who may read the dashboard: the holder of the token.

The token comes from ``web.token_file``, or is made once at random in the data folder
(``web.token``, owner-only). A request shows it as ``Authorization: Bearer <token>``, or
by the session cookie the login form sets: an HMAC of the token (never the token itself),
HttpOnly and SameSite=Strict, so no other site can make a browser send it. Compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from mqi_es.adapters.notify.secret_file import read_secret
from mqi_es.core.errors import ConfigError
from mqi_es.core.notices import NotDelivered

COOKIE = "mqi_session"
SESSION_SECONDS = 12 * 3600  # a login lasts a working day
MIN_TOKEN_CHARS = 16
_SESSION_PURPOSE = b"mqi web session v2"


def web_token(token_file: Path | None, data_folder: Path) -> str:
    """The token from ``token_file``, or the one made for this data folder (made now if
    there is none yet).

    :raises ConfigError: the token file cannot be read, or is empty.
    """
    if token_file is not None:
        token = read_secret(token_file, "web.token_file", keep_spaces=False)
        if isinstance(token, NotDelivered):
            raise ConfigError(token.detail)
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"web.token_file {token_file} holds a token of {len(token)} "
                              f"characters: give at least {MIN_TOKEN_CHARS} (e.g. `openssl "
                              "rand -hex 32`)")  # fmt: skip
        return token
    made = data_folder / "web.token"
    data_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return web_token(made, data_folder)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return web_token(made, data_folder)


class Gate:
    """Checks what a request shows against the token. A session cookie is its issue time
    and an HMAC of it under the token: it expires, and rotating the token ends them all."""

    def __init__(self, token: str, clock: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        self._clock = clock

    def is_token(self, shown: str) -> bool:
        return hmac.compare_digest(shown.encode(), self._token)

    def session(self) -> str:
        issued = str(int(self._clock()))
        return f"{issued}.{self._sign(issued)}"

    def admits(self, authorization: str | None, cookie: str | None) -> bool:
        if authorization is not None:
            scheme, _, shown = authorization.partition(" ")
            return scheme.lower() == "bearer" and self.is_token(shown.strip())
        if cookie is None:
            return False
        issued, _, signature = cookie.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(signature, self._sign(issued)):
            return False
        return 0 <= self._clock() - int(issued) <= SESSION_SECONDS

    def _sign(self, issued: str) -> str:
        message = _SESSION_PURPOSE + b"|" + issued.encode()
        return hmac.new(self._token, message, hashlib.sha256).hexdigest()
