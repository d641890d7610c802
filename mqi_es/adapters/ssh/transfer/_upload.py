"""Upload: a case folder to the node, each file read once and checked there."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import asyncssh

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.transfer._shared import (
    MANIFEST,
    PART,
    PART_NAME,
    Progress,
    TransferFailed,
    Transferred,
    _check_parallel,
    _Conflict,
    _done,
    _each,
    _failure,
    _manifest,
    _Meter,
    _parse_manifest,
    _remote_absolute,
    _SizeMismatch,
    _verify_remote,
    node_digests,
)
from mqi_es.adapters.ssh.transfer.case_reader import (
    CHUNK,
    SMALL_FILE,
    CaseFile,
    CaseReader,
    OpenCaseFile,
    TransferRefused,
    scan_case,
)
from mqi_es.core.outcome import Unknown

_WRITES_IN_FLIGHT = 2  # pieces of one large file being written at once
_R = TypeVar("_R")


async def upload_dir(
    conn: HostConnection,
    local_dir: Path,
    remote_dir: str,
    *,
    parallel: int = 8,
    progress: Progress | None = None,
    still_registered: Callable[[], str | None] | None = None,
) -> Transferred | TransferFailed | Unknown:
    """Copy the case folder `local_dir` to `remote_dir` on the node, all or nothing, each
    file read once and verified on the node against the digest of what was read.

    :param remote_dir: absolute, or relative to the remote home (``~/x`` or ``x``); unique
        per case attempt, chosen by the caller
    :param parallel: files in flight at once
    :param still_registered: called (in a thread) once every file is sent, before the copy
        is published: why the case no longer matches what was registered, or None
    :raises TransferRefused: the case holds something that must not be sent, a file
        changed while it was sent, the node's copy differs, or ``still_registered`` said so
    :raises ValueError: `parallel` < 1, or `remote_dir` is ``~user/...``, ``/`` or the home
    """
    _check_parallel(parallel)
    started = time.monotonic()
    dirs, files = await asyncio.to_thread(scan_case, local_dir, reserved=frozenset({MANIFEST}))
    sftp = await conn.sftp()
    if isinstance(sftp, Unknown):
        return sftp
    home = await conn.home()
    if isinstance(home, Unknown):
        return home
    target = _remote_absolute(remote_dir, home)
    part: str | None = None
    try:
        with CaseReader(local_dir) as reader:
            if await _remote_exists(sftp, target):
                digests = await _check_remote_copy(conn, sftp, reader, target, files)
                return _done(files, digests, started, reused=True)
            parent = posixpath.dirname(target)
            await sftp.makedirs(parent, exist_ok=True)
            await _remove_remote_parts(sftp, parent)
            part = f"{target}{PART}{secrets.token_hex(6)}"
            await sftp.mkdir(part)
            for relpath in dirs:
                await sftp.mkdir(posixpath.join(part, relpath))
            meter = _Meter(sum(f.size for f in files), progress)
            digests = {}

            async def send(file: CaseFile) -> None:
                destination = posixpath.join(part, file.relpath)
                digests[file.relpath] = await _send(sftp, reader, file, destination, meter)

            await _each(files, send, parallel)
        await _verify_remote(sftp, part, files)
        if still_registered is not None and (changed := await asyncio.to_thread(still_registered)):
            raise TransferRefused(changed)
        unknown = await _node_checks(conn, part, files, digests)
        if unknown is not None:
            return unknown  # the partial copy is swept by the next attempt
        manifest = _manifest(files, digests)
        async with sftp.open(posixpath.join(part, MANIFEST), "wb") as out:
            await out.write(manifest)
        await sftp.rename(part, target)
    except (_Conflict, _NodeCheckFailed) as exc:
        if part is not None:
            with contextlib.suppress(OSError, asyncssh.Error):
                await sftp.rmtree(part)
        return TransferFailed(f"{conn.target.name}: {exc}")
    except TransferRefused:
        if part is not None:
            with contextlib.suppress(OSError, asyncssh.Error):
                await sftp.rmtree(part)
        raise
    except (OSError, asyncssh.Error, _SizeMismatch) as exc:
        outcome = await _failure(conn, "upload", exc, sftp, target)
        if part is not None and isinstance(outcome, TransferFailed):
            with contextlib.suppress(OSError, asyncssh.Error):
                await sftp.rmtree(part)
        return outcome
    return _done(files, digests, started, manifest=manifest)


async def _send(
    sftp: asyncssh.SFTPClient, reader: CaseReader, file: CaseFile, destination: str,
    meter: _Meter,
) -> str:  # fmt: skip
    """Send one case file as it is read; returns the SHA-256 of exactly what was sent.

    A large file is read, hashed and written in pieces: the next piece is read (in a
    thread) while up to ``_WRITES_IN_FLIGHT`` pieces are being written, so the link never
    waits for the disk nor the disk for the link.
    """
    if file.size <= SMALL_FILE:
        data, digest = await _in_thread(reader.read_whole, file)
        async with sftp.open(destination, "wb") as out:
            await out.write(data)
        meter.add(len(data))
        return digest
    opened = await _in_thread(reader.open, file, cleanup=OpenCaseFile.close)
    pending: asyncio.Future[bytes] | None = None
    writing: set[asyncio.Future[int]] = set()
    try:
        async with sftp.open(destination, "wb") as out:
            offset = 0
            pending = _thread_task(opened.read, CHUNK)
            while chunk := await asyncio.shield(pending):
                pending = _thread_task(opened.read, CHUNK)
                writing.add(asyncio.ensure_future(out.write(chunk, offset)))
                offset += len(chunk)
                while len(writing) >= _WRITES_IN_FLIGHT:
                    await _written(writing, meter)
            while writing:
                await _written(writing, meter)
        return await _in_thread(opened.finish)
    finally:
        for write in writing:
            write.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
        if pending is not None:
            await asyncio.wait([pending])  # its thread reads the file: it ends before the close
        opened.close()


def _thread_task(fn: Callable[..., _R], *args: object) -> asyncio.Future[_R]:
    """``fn(*args)`` in a worker thread, as a task that is done only once the thread is."""
    return asyncio.ensure_future(asyncio.to_thread(fn, *args))


async def _in_thread(
    fn: Callable[..., _R], *args: object, cleanup: Callable[[_R], object] | None = None
) -> _R:
    """``fn(*args)`` in a worker thread. A cancelled caller still waits for the thread
    (it may be using the case folder's descriptor) and hands what it opened to ``cleanup``,
    so nothing is left open behind a cancelled upload."""
    task = _thread_task(fn, *args)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if cleanup is not None and not task.cancelled() and task.exception() is None:
            cleanup(task.result())
        raise


async def _written(writing: set[asyncio.Future[int]], meter: _Meter) -> None:
    """Wait for one of the pieces in flight to be written (its error, if any, is raised)."""
    done, _ = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
    for write in done:
        writing.discard(write)
        meter.add(write.result())


async def _node_checks(
    conn: HostConnection, folder: str, files: Sequence[CaseFile], digests: Mapping[str, str]
) -> Unknown | None:
    """The node hashes the copy in `folder` and it must match `digests`: None when it
    does, Unknown when the node could not be asked.

    :raises TransferRefused: a file differs on the node (the case is sent again)
    :raises _NodeCheckFailed: the check itself could not run
    """
    found = await node_digests(conn, folder, files)
    match found:
        case Unknown():
            return found
        case TransferFailed(reason=reason):
            raise _NodeCheckFailed(reason)
    differing = [f.relpath for f in files if found[f.relpath] != digests[f.relpath]]
    if differing:
        raise TransferRefused(
            f"{len(differing)} file(s) differ on the node from what was read here (first: "
            f"{differing[0]}); the case is sent again"
        )
    return None


async def _check_remote_copy(
    conn: HostConnection, sftp: asyncssh.SFTPClient, reader: CaseReader, target: str,
    files: Sequence[CaseFile],
) -> dict[str, str]:  # fmt: skip
    """Accept a complete earlier upload of this very case (its files read here again and
    their digests checked on the node), else raise _Conflict; its digests."""
    try:
        async with sftp.open(posixpath.join(target, MANIFEST), "rb") as recorded:
            listed, digests = _parse_manifest(await recorded.read())
    except (asyncssh.SFTPNoSuchFile, ValueError):
        raise _Conflict(f"{target} exists but is not a complete upload") from None
    if [(f.relpath, f.size, f.mtime_ns) for f in listed] != [
        (f.relpath, f.size, f.mtime_ns) for f in files
    ]:
        raise _Conflict(f"{target} exists with other content than this case")
    here = {f.relpath: await _in_thread(reader.digest, f) for f in files}
    if here != digests:
        raise _Conflict(f"{target} exists with other content than this case")
    try:
        await _verify_remote(sftp, target, files)
        unknown = await _node_checks(conn, target, files, digests)
    except _SizeMismatch as exc:
        raise _Conflict(f"{target} was uploaded, but {exc.relpath} changed since") from None
    except TransferRefused as exc:
        raise _Conflict(f"{target} was uploaded, but changed since: {exc}") from None
    if unknown is not None:
        raise ConnectionError(unknown.reason)
    return digests


async def _remote_exists(sftp: asyncssh.SFTPClient, path: str) -> bool:
    try:
        await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return False
    return True


async def _remove_remote_parts(sftp: asyncssh.SFTPClient, parent: str) -> None:
    """Remove what interrupted attempts left in the case's folder: ``*.part-*``, of this
    attempt and of any earlier one."""
    async for entry in sftp.scandir(parent):
        filename = str(entry.filename)
        if PART_NAME.fullmatch(filename):
            await sftp.rmtree(posixpath.join(parent, filename))


class _NodeCheckFailed(Exception):
    """The node could not run the check of a copy (e.g. no sha256sum there)."""
