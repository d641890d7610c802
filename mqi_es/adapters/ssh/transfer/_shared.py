"""What both directions share: outcomes, the remote listing, parallel copying, failure
classification, progress and the manifest."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import posixpath
import re
import shlex
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncssh

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.transfer.case_reader import CaseFile, TransferRefused
from mqi_es.adapters.ssh.transfer.sums import SumsError, hash_command, names_input, read_digests
from mqi_es.core.outcome import Ok, Progress, RemoteFailure, Unknown, summary
from mqi_es.core.reactions import Digests

MANIFEST = ".mqi-manifest.json"
PART = ".part-"
PART_NAME = re.compile(r".+\.part-[0-9a-f]{12}")  # a partial copy of an interrupted transfer
CONNECTION_GONE = frozenset({asyncssh.FX_NO_CONNECTION, asyncssh.FX_CONNECTION_LOST})
HASH_RATE = 100 * 1024 * 1024  # bytes/s a node hashes at least: bounds a check's timeout


_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Transferred:
    files: int
    bytes: int
    seconds: float
    reused: bool = False
    digests: Digests = ()
    manifest_sha256: str = ""  # the SHA-256 of the manifest: one digest for the whole copy


@dataclass(frozen=True, slots=True)
class NoMatches:
    """No remote file matched; the caller decides whether that is a failure."""

    globs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """The node or the local file system refused; `reason` says what and why, ``local``
    whether it was this machine (a full disk here is no fault of the node's)."""

    reason: str
    local: bool = False


@dataclass(frozen=True, slots=True)
class _File:
    relpath: str  # POSIX, relative to the copied folder
    size: int
    mtime_ns: int  # tells a re-exported case from a retry of the same one
    source: str  # where to read it: a local real path, or a remote absolute path


class _SizeMismatch(Exception):
    def __init__(self, relpath: str, expected: int, found: int | None) -> None:
        self.relpath = relpath
        arrived = "nothing" if found is None else f"{found} bytes"
        super().__init__(f"{relpath}: {arrived} arrived, {expected} bytes expected")


class _Conflict(Exception):
    """The destination exists but is not the complete copy of this source."""


async def _verify_remote(
    sftp: asyncssh.SFTPClient, folder: str, files: Sequence[CaseFile | _File]
) -> None:
    """Every file is in `folder` with its size, or _SizeMismatch.

    One directory listing per folder: the sizes the node reports, for a fraction of the
    requests a stat per file would take.
    """
    found = {f.relpath: f.size for f in await _remote_files(sftp, folder)}
    for file in files:
        if found.get(file.relpath) != file.size:
            raise _SizeMismatch(file.relpath, file.size, found.get(file.relpath))


async def _remote_files(sftp: asyncssh.SFTPClient, root: str) -> list[_File]:
    """Regular files under `root`, recursively, without following links or the manifest."""
    files: list[_File] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        async for entry in sftp.scandir(posixpath.join(root, relative)):
            name = str(entry.filename)
            if name in (".", ".."):
                continue
            relpath = posixpath.join(relative, name)
            if entry.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                pending.append(relpath)
            elif entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR and relpath != MANIFEST:
                mtime_ns = (entry.attrs.mtime or 0) * 1_000_000_000
                files.append(
                    _File(relpath, entry.attrs.size or 0, mtime_ns, posixpath.join(root, relpath))
                )
    return sorted(files, key=lambda f: f.relpath)


async def node_digests(
    conn: HostConnection, folder: str, files: Sequence[CaseFile | _File]
) -> dict[str, str] | TransferFailed | Unknown:
    """The SHA-256 the node computes of each file under `folder` (one command for all)."""
    names = [f.relpath for f in files]
    command = f"cd {shlex.quote(folder)} && {hash_command(names)}"
    outcome = await conn.run(command, input=names_input(names), timeout=_check_timeout(conn, files))
    match outcome:
        case Ok(stdout=stdout):
            try:
                return dict(zip(names, read_digests(stdout, len(names)), strict=True))
            except SumsError as exc:
                return TransferFailed(f"{conn.target.name}: {exc}")
        case RemoteFailure():
            return TransferFailed(f"{conn.target.name}: hashing failed: {summary(outcome)}")
        case Unknown():
            return outcome


def _check_timeout(conn: HostConnection, files: Sequence[CaseFile | _File]) -> float:
    return conn.target.command_timeout + sum(f.size for f in files) / HASH_RATE


def _remote_absolute(path: str, home: str) -> str:
    """An absolute remote path; ``~/`` and relative paths are under the remote home."""
    if path == "~" or path.startswith("~/"):
        path = path[2:].lstrip("/")  # as the shell reads ~//x: under the home, like ~/x
    elif path.startswith("~"):
        raise ValueError(f"only the own home (~/) is supported, not {path.split('/')[0]}")
    absolute = posixpath.normpath(posixpath.join(home, path))
    if absolute in ("/", posixpath.normpath(home)):
        raise ValueError("a transfer needs its own folder, not / or the home folder")
    return absolute


async def _each(items: Sequence[_T], act: Callable[[_T], Awaitable[None]], parallel: int) -> None:
    """`act` on every item, at most `parallel` at once; the first error stops the rest and
    is raised as itself (a refusal first, then a lost connection, then the first)."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:  # one shared iterator: each item is taken once
            await act(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(parallel, len(items))):
                group.create_task(worker())
    except ExceptionGroup as failures:
        errors = _leaves(failures)
        refusals = [error for error in errors if isinstance(error, TransferRefused)]
        raise (refusals[0] if refusals else _most_telling(errors)) from None


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for error in group.exceptions:
        found += _leaves(error) if isinstance(error, BaseExceptionGroup) else [error]
    return found


def _check_parallel(parallel: int) -> None:
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, not {parallel}")


def _most_telling(errors: Sequence[BaseException]) -> BaseException:
    """A lost connection explains every other error of the same moment."""
    for error in errors:
        if isinstance(_failure_kind(error), Unknown):
            return error
    return errors[0]


def _failure_kind(exc: BaseException) -> TransferFailed | Unknown:
    if isinstance(exc, asyncssh.SFTPError):
        if exc.code in CONNECTION_GONE:
            return Unknown(f"connection lost: {exc.reason}")
        return TransferFailed(exc.reason)
    if isinstance(exc, asyncssh.Error | ConnectionError | TimeoutError):
        why = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
        return Unknown(f"connection lost: {why}")
    if isinstance(exc, OSError):  # the local file system (asyncssh reports remote errors)
        return TransferFailed(f"local file system: {exc.strerror or exc}", local=True)
    return TransferFailed(str(exc))


async def _failure(
    conn: HostConnection,
    what: str,
    exc: BaseException,
    sftp: asyncssh.SFTPClient,
    target: str | None,
) -> TransferFailed | Unknown:
    """The outcome for `exc`; OpenSSH reports a full disk as a bare "Failure": add free space."""
    outcome = _failure_kind(exc)
    if isinstance(outcome, Unknown):
        return Unknown(f"{conn.target.name}: {what}: {outcome.reason}")
    reason = outcome.reason
    if isinstance(exc, asyncssh.SFTPFailure) and target is not None:
        with contextlib.suppress(OSError, asyncssh.Error):
            space = await sftp.statvfs(posixpath.dirname(target))
            reason += f" ({space.bavail * space.frsize} bytes free on the node's file system)"
    return TransferFailed(f"{conn.target.name}: {what}: {reason}", local=outcome.local)


class _Meter:
    """Adds up asyncssh's per-file progress into one (done, total) for the caller."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self._progress = progress
        if progress is not None:
            progress(0, total)

    def add(self, moved: int) -> None:
        self.done += moved
        if self._progress is not None:
            self._progress(self.done, self.total)

    def handler(self) -> Callable[[bytes, bytes, int, int], None] | None:
        """A progress handler for one asyncssh put() or get()."""
        if self._progress is None:
            return None
        last = 0

        def moved(_source: bytes, _destination: bytes, copied: int, _size: int) -> None:
            nonlocal last
            self.add(copied - last)
            last = copied

        return moved


def _manifest(files: Iterable[CaseFile | _File], digests: Mapping[str, str]) -> bytes:
    listing = sorted([f.relpath, f.size, f.mtime_ns, digests[f.relpath]] for f in files)
    return json.dumps({"manifest": 2, "files": listing}, ensure_ascii=False).encode() + b"\n"


def _parse_manifest(data: bytes) -> tuple[list[_File], dict[str, str]]:
    """Files listed by a manifest and their digests; ValueError if it is not one of ours."""
    try:
        content = json.loads(data)
        if content["manifest"] != 2:
            raise ValueError(f"manifest version {content['manifest']}")
        listing = content["files"]
        files = [_File(str(path), int(size), int(mtime), "") for path, size, mtime, _ in listing]
        return files, {str(path): str(digest) for path, _, _, digest in listing}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a transfer manifest: {exc}") from None


def _done(
    files: Sequence[CaseFile | _File], digests: Mapping[str, str], started: float, *,
    reused: bool = False, manifest: bytes | None = None,
) -> Transferred:  # fmt: skip
    listing = tuple(sorted((f.relpath, f.size, digests[f.relpath]) for f in files))
    data = manifest if manifest is not None else _manifest(files, digests)
    return Transferred(
        len(files),
        sum(f.size for f in files),
        time.monotonic() - started,
        reused,
        listing,
        hashlib.sha256(data).hexdigest(),
    )
