"""Words for a POSIX shell on a node: every value quoted, remote paths that keep ``~``.

Every value that reaches a remote shell is single-quoted, so a case name can only ever be
data. Paths under the remote home are written ``"$HOME"/'rest'``, because a quoted ``~``
is not expanded. Pure.
"""

from __future__ import annotations

import re

from mqi_es.core.errors import ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def quote(value: str) -> str:
    """Single-quote ``value`` for a POSIX shell, always (even ``abc`` -> ``'abc'``).

    Always quoting keeps a value from ever being read as a reserved word (``if``), an
    assignment (``A=b``) or an alias.

    :raises ValueError: ``value`` contains NUL, which no argument can carry.
    """
    if "\0" in value:
        raise ValueError("a shell argument cannot contain a NUL character")
    return "'" + value.replace("'", "'\\''") + "'"


def split_home(base_dir: str) -> tuple[bool, str]:
    """Split a remote path into (relative to the remote home?, the rest), unquoted.

    ``~`` and ``~/x`` are under the home; so is a relative path, because SSH commands and
    SFTP both start there. ``~user`` is not supported.

    :raises ConfigError: the path is empty or starts with ``~user``.
    """
    if not base_dir:
        raise ConfigError("a remote path must not be empty")
    if base_dir == "~":
        return True, ""
    if base_dir.startswith("~/"):
        return True, base_dir[2:].lstrip("/")
    if base_dir.startswith("~"):
        raise ConfigError("a remote path may start with '~' or '~/', not '~user'")
    if base_dir.startswith("/"):
        return False, base_dir
    return True, base_dir


def remote_path(base_dir: str, *parts: str) -> str:
    """A shell word for ``base_dir/part/...``, e.g. ``"$HOME"/'my cases/case 1'``.

    ``"$HOME"`` rather than ``~``: a tilde is expanded only at the start of a word, so it
    would stay literal in ``--working-directory=~/x``.

    :raises ConfigError: see ``split_home``.
    :raises ValueError: a part is empty, or anything contains a NUL character.
    """
    in_home, rest = split_home(base_dir)
    if any(not part for part in parts):
        raise ValueError("path parts must not be empty")
    if parts:
        head = rest.rstrip("/")
        rest = "/".join(parts) if in_home and not head else "/".join([head, *parts])
    if not in_home:
        return quote(rest)
    return '"$HOME"/' + quote(rest) if rest else '"$HOME"'


def checked_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"{name[:40]!r} is not a valid environment variable name")
    return name
