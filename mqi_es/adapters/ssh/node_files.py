"""Housekeeping of the node's files over the connection's SFTP session: removing an ended
case's folder, and reading how much room the node has left.

A folder is removed only if it is a real folder (a symbolic link is never followed: it
might point anywhere), only below the home or an absolute path of its own (never ``/`` or
the home itself), and everything in it goes, symbolic links as links. A folder already
gone counts as removed. The node saying no is a ``RemoteFailure``; a connection that fails
is ``Unknown``.
"""

from __future__ import annotations

import asyncio
import stat

import asyncssh

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.transfer._shared import _failure_kind, _remote_absolute
from mqi_es.core.outcome import Ok, RemoteFailure, Unknown


async def remove_folder(conn: HostConnection, folder: str) -> Ok | RemoteFailure | Unknown:
    located = await _located(conn, folder)
    if not isinstance(located, tuple):
        return located
    sftp, path = located
    try:
        async with asyncio.timeout(conn.target.command_timeout * 10):  # a large tree: a while
            try:
                attrs = await sftp.lstat(path)
            except asyncssh.SFTPNoSuchFile:
                return Ok(f"{path} was gone already")
            if attrs.permissions is not None and stat.S_ISLNK(attrs.permissions):
                return RemoteFailure(1, f"{path} is a symbolic link: not followed, not removed")
            if attrs.permissions is not None and not stat.S_ISDIR(attrs.permissions):
                return RemoteFailure(1, f"{path} is not a folder: not removed")
            await sftp.rmtree(path)
    except (asyncssh.Error, OSError) as exc:
        return _said(conn, f"removing {path}", exc)
    return Ok(f"removed {path}")


async def free_bytes(conn: HostConnection, folder: str) -> int | RemoteFailure | Unknown:
    """Bytes an unprivileged user may still write where ``folder`` is (or would be: its
    nearest existing parent)."""
    located = await _located(conn, folder, allow_home=True)
    if not isinstance(located, tuple):
        return located
    sftp, path = located
    try:
        async with asyncio.timeout(conn.target.command_timeout):
            while True:
                try:
                    space = await sftp.statvfs(path)
                    return int(space.bavail * space.frsize)
                except asyncssh.SFTPNoSuchFile:
                    parent = path.rsplit("/", 1)[0] or "/"
                    if parent == path:
                        raise
                    path = parent
    except (asyncssh.Error, OSError) as exc:
        return _said(conn, f"reading the free space at {path}", exc)


async def _located(
    conn: HostConnection, folder: str, *, allow_home: bool = False
) -> tuple[asyncssh.SFTPClient, str] | RemoteFailure | Unknown:
    sftp = await conn.sftp()
    if isinstance(sftp, Unknown):
        return sftp
    home = await conn.home()
    if isinstance(home, Unknown):
        return home
    try:
        return sftp, _remote_absolute(folder, home)
    except ValueError as exc:
        if allow_home and folder in ("~", "~/", home):
            return sftp, home
        return RemoteFailure(1, f"{folder}: {exc}")


def _said(conn: HostConnection, what: str, exc: BaseException) -> RemoteFailure | Unknown:
    kind = _failure_kind(exc)
    if isinstance(kind, Unknown):
        return Unknown(f"{conn.target.name}: {what}: {kind.reason}")
    return RemoteFailure(1, f"{conn.target.name}: {what}: {kind.reason}")
