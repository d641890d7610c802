"""Case upload and result download over a node's shared SFTP session.

Both directions write into a temporary sibling ``<dir>.part-<random>``, check every size,
write a manifest (``.mqi-manifest.json``: each file, its size and mtime) LAST, and then
rename the folder to ``<dir>``. So a folder without ``.part-`` is complete, a partial copy
never looks complete, and a retry either finds the complete folder (accepted once its
manifest matches and every listed size checks out: no second copy) or removes the stale
``.part-*`` siblings and starts again. One transfer per destination at a time: the caller
(one daemon, one attempt per case) guarantees it.

Files travel in parallel (``parallel`` at once; ``sftp.put(recurse=True)`` would copy one
at a time) with asyncssh's default block size (larger blocks make OpenSSH drop the session).

Case contents: symbolic links are followed, so the node receives what they point to, as
plain files and folders. A link that leads outside the case, a broken link, a loop, a
special file (FIFO, socket, device), a file name that is not UTF-8 or the reserved manifest
name raise `TransferRefused` before anything is sent. Remote symlinks are never followed
when downloading (a result is a regular file of the case folder).

Outcomes, never asyncssh exceptions:
    Transferred      done (or found complete already: ``reused``)
    NoMatches        download only: no remote file matched the globs
    TransferFailed   the node or the local disk refused: permission, no space, sizes differ
    Unknown          connection lost or not available: retry later
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import posixpath
import secrets
import shutil
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import asyncssh

from mqi_es.errors import CaseError
from mqi_es.outcome import Unknown
from mqi_es.ssh import HostConnection

__all__ = [
    "MANIFEST",
    "NoMatches",
    "Progress",
    "TransferFailed",
    "TransferRefused",
    "Transferred",
    "download_results",
    "upload_dir",
]

MANIFEST = ".mqi-manifest.json"
_PART = ".part-"
_SMALL_FILE = 1024 * 1024  # up to this size a file is read whole and sent in one write
_CONNECTION_GONE = frozenset({asyncssh.FX_NO_CONNECTION, asyncssh.FX_CONNECTION_LOST})

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in total) as data moves."""


class TransferRefused(CaseError):
    """Raised when a case folder cannot be sent as it is (e.g. a link out of the case)."""


@dataclass(frozen=True, slots=True)
class Transferred:
    files: int
    bytes: int
    seconds: float
    reused: bool = False


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


async def upload_dir(
    conn: HostConnection,
    local_dir: Path,
    remote_dir: str,
    *,
    parallel: int = 8,
    progress: Progress | None = None,
) -> Transferred | TransferFailed | Unknown:
    """Copy the case folder `local_dir` to `remote_dir` on the node, all or nothing.

    :param remote_dir: absolute, or relative to the remote home (``~/x`` or ``x``); unique
        per case attempt, chosen by the caller
    :param parallel: files in flight at once
    :raises TransferRefused: the case holds something that must not be sent
    :raises ValueError: `parallel` < 1, or `remote_dir` is ``~user/...``, ``/`` or the home
    """
    _check_parallel(parallel)
    started = time.monotonic()
    dirs, files = await asyncio.to_thread(_scan_case, local_dir)
    sftp = await conn.sftp()
    if isinstance(sftp, Unknown):
        return sftp
    home = await conn.home()
    if isinstance(home, Unknown):
        return home
    target = _remote_absolute(remote_dir, home)
    manifest = _manifest(files)
    part: str | None = None
    try:
        if await _remote_exists(sftp, target):
            await _check_remote_copy(sftp, target, manifest)
            return _done(files, started, reused=True)
        parent, name = posixpath.split(target)
        await sftp.makedirs(parent, exist_ok=True)
        await _remove_remote_parts(sftp, parent, name)
        part = f"{target}{_PART}{secrets.token_hex(6)}"
        await sftp.mkdir(part)
        for relpath in dirs:
            await sftp.mkdir(posixpath.join(part, relpath))
        meter = _Meter(sum(f.size for f in files), progress)

        async def send(file: _File) -> None:
            destination = posixpath.join(part, file.relpath)
            if file.size <= _SMALL_FILE:
                await _send_small(sftp, file.source, destination)
                meter.add(file.size)
            else:
                await sftp.put(file.source, destination, progress_handler=meter.handler())

        await _each(files, send, parallel)
        await _verify_remote(sftp, part, files)
        async with sftp.open(posixpath.join(part, MANIFEST), "wb") as out:
            await out.write(manifest)
        await sftp.rename(part, target)
    except _Conflict as exc:
        return TransferFailed(f"{conn.target.name}: {exc}")
    except (OSError, asyncssh.Error, _SizeMismatch) as exc:
        outcome = await _failure(conn, "upload", exc, sftp, target)
        if part is not None and isinstance(outcome, TransferFailed):
            with contextlib.suppress(OSError, asyncssh.Error):
                await sftp.rmtree(part)
        return outcome
    return _done(files, started)


async def download_results(
    conn: HostConnection,
    remote_dir: str,
    globs: Sequence[str],
    local_dir: Path,
    *,
    parallel: int = 8,
    progress: Progress | None = None,
) -> Transferred | NoMatches | TransferFailed | Unknown:
    """Copy the files of `remote_dir` that match `globs` into `local_dir`, all or nothing.

    :param globs: relative to `remote_dir`; ``*``, ``?``, ``[...]`` within a name and
        ``**`` for any number of folders (``**/*.dcm``)
    :param local_dir: created owner-only (0700), with the remote sub-folders kept
    :raises ValueError: `parallel` < 1, a glob that is absolute or climbs with ``..``, or
        `remote_dir` is ``~user/...``, ``/`` or the home
    """
    _check_parallel(parallel)
    patterns = [_glob_parts(glob) for glob in globs]
    started = time.monotonic()
    try:
        if local_dir.exists():
            files = await asyncio.to_thread(_check_local_copy, local_dir)
            return _done(files, started, reused=True)
    except _Conflict as exc:
        return TransferFailed(str(exc))
    sftp = await conn.sftp()
    if isinstance(sftp, Unknown):
        return sftp
    home = await conn.home()
    if isinstance(home, Unknown):
        return home
    source = _remote_absolute(remote_dir, home)
    part = local_dir.with_name(f"{local_dir.name}{_PART}{secrets.token_hex(6)}")
    try:
        found = await _remote_files(sftp, source)
        files = [f for f in found if any(_matches(p, f.relpath.split("/")) for p in patterns)]
        if not files:
            return NoMatches(tuple(globs))
        await asyncio.to_thread(_prepare_local_part, local_dir, part, files)
        meter = _Meter(sum(f.size for f in files), progress)

        async def fetch(file: _File) -> None:
            destination = part / file.relpath
            await sftp.get(file.source, destination, progress_handler=meter.handler())
            size = destination.stat().st_size
            if size != file.size:
                raise _SizeMismatch(file.relpath, file.size, size)

        await _each(files, fetch, parallel)
        await asyncio.to_thread(_seal_local_part, part, local_dir, _manifest(files))
    except (OSError, asyncssh.Error, _SizeMismatch, UnicodeError) as exc:
        # UnicodeError: a remote file name that is not UTF-8.
        await asyncio.to_thread(shutil.rmtree, part, True)
        return await _failure(conn, "download", exc, sftp, None)
    return _done(files, started)


# -- the local side -----------------------------------------------------------------------


def _scan_case(local_dir: Path) -> tuple[list[str], list[_File]]:
    """Folders (parents first) and files of a case, links resolved; refuse what must not go."""
    root = local_dir.resolve(strict=True)
    dirs: list[str] = []
    files: list[_File] = []

    def walk(folder: Path, relative: PurePosixPath, ancestors: frozenset[tuple[int, int]]) -> None:
        with os.scandir(folder) as entries:
            listing = sorted(entries, key=lambda entry: entry.name)
        for entry in listing:
            relpath = relative / entry.name
            _check_name(entry.name, relpath)
            path = Path(entry.path)  # `folder` is resolved: only a link can lead elsewhere
            if entry.is_symlink():
                path = path.resolve()
                if not path.is_relative_to(root):
                    raise TransferRefused(f"{relpath} is a symbolic link to outside the case")
                if not path.exists():
                    raise TransferRefused(f"{relpath} is a broken symbolic link")
            info = path.stat()
            if stat.S_ISDIR(info.st_mode):
                identity = (info.st_dev, info.st_ino)
                if identity in ancestors:
                    raise TransferRefused(f"{relpath} links to a folder that contains it")
                dirs.append(str(relpath))
                walk(path, relpath, ancestors | {identity})
            elif stat.S_ISREG(info.st_mode):
                files.append(_File(str(relpath), info.st_size, info.st_mtime_ns, str(path)))
            else:
                raise TransferRefused(f"{relpath} is neither a regular file nor a folder")

    top = root.stat()
    walk(root, PurePosixPath(), frozenset({(top.st_dev, top.st_ino)}))
    if MANIFEST in (f.relpath for f in files):
        raise TransferRefused(f"{MANIFEST} is a name reserved for the transfer manifest")
    return dirs, files


def _check_name(name: str, relpath: PurePosixPath) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(relpath).decode("utf-8", "backslashreplace")  # the raw bytes
        raise TransferRefused(f"{shown} has a name that is not UTF-8") from None


def _prepare_local_part(local_dir: Path, part: Path, files: Iterable[_File]) -> None:
    """Remove stale ``.part-*`` siblings, then create `part` and its folders owner-only."""
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in local_dir.parent.glob(f"{_glob_escape(local_dir.name)}{_PART}*"):
        shutil.rmtree(stale, ignore_errors=True)
    part.mkdir(mode=0o700)
    for file in files:
        folder = part
        for name in PurePosixPath(file.relpath).parts[:-1]:
            folder = folder / name
            folder.mkdir(mode=0o700, exist_ok=True)


def _seal_local_part(part: Path, local_dir: Path, manifest: bytes) -> None:
    """Manifest last, everything flushed to disk, then the rename that publishes it."""
    (part / MANIFEST).write_bytes(manifest)
    for path in sorted(part.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        _fsync(path)
    _fsync(part)
    part.rename(local_dir)
    _fsync(local_dir.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_local_copy(local_dir: Path) -> list[_File]:
    """The files of a complete earlier download, or _Conflict."""
    try:
        files = _parse_manifest((local_dir / MANIFEST).read_bytes())
        intact = all((local_dir / f.relpath).stat().st_size == f.size for f in files)
    except (OSError, ValueError):
        intact = False
    if not intact:
        raise _Conflict(f"{local_dir} exists but is not a complete download")
    return files


# -- the remote side ----------------------------------------------------------------------


async def _send_small(sftp: asyncssh.SFTPClient, source: str, destination: str) -> None:
    """Write a small file in one go: open, write, close (put() adds a stat and more).

    Many small files are bound by requests, not bytes; sizes are checked afterwards.
    """
    data = Path(source).read_bytes()
    async with sftp.open(destination, "wb") as out:
        await out.write(data)


async def _verify_remote(sftp: asyncssh.SFTPClient, folder: str, files: Sequence[_File]) -> None:
    """Every file is in `folder` with its size, or _SizeMismatch.

    One directory listing per folder: the sizes the node reports, for a fraction of the
    requests a stat per file would take.
    """
    found = {f.relpath: f.size for f in await _remote_files(sftp, folder)}
    for file in files:
        if found.get(file.relpath) != file.size:
            raise _SizeMismatch(file.relpath, file.size, found.get(file.relpath))


def _remote_absolute(path: str, home: str) -> str:
    """An absolute remote path; ``~/`` and relative paths are under the remote home."""
    if path == "~" or path.startswith("~/"):
        path = path[2:]
    elif path.startswith("~"):
        raise ValueError(f"only the own home (~/) is supported, not {path.split('/')[0]}")
    absolute = posixpath.normpath(posixpath.join(home, path))
    if absolute in ("/", posixpath.normpath(home)):
        raise ValueError("a transfer needs its own folder, not / or the home folder")
    return absolute


async def _remote_exists(sftp: asyncssh.SFTPClient, path: str) -> bool:
    try:
        await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return False
    return True


async def _check_remote_copy(sftp: asyncssh.SFTPClient, target: str, manifest: bytes) -> None:
    """Accept a complete earlier upload of the same case, else raise _Conflict."""
    try:
        async with sftp.open(posixpath.join(target, MANIFEST), "rb") as recorded:
            previous = await recorded.read()
    except asyncssh.SFTPNoSuchFile:
        raise _Conflict(f"{target} exists but is not a complete upload") from None
    if previous != manifest:
        raise _Conflict(f"{target} exists with other content than this case")
    try:
        await _verify_remote(sftp, target, _parse_manifest(manifest))
    except _SizeMismatch as exc:
        raise _Conflict(f"{target} was uploaded, but {exc.relpath} changed since") from None


async def _remove_remote_parts(sftp: asyncssh.SFTPClient, parent: str, name: str) -> None:
    """Remove what earlier interrupted attempts left: ``<name>.part-*``."""
    async for entry in sftp.scandir(parent):
        filename = str(entry.filename)
        if filename.startswith(f"{name}{_PART}"):
            await sftp.rmtree(posixpath.join(parent, filename))


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


# -- shared -------------------------------------------------------------------------------


async def _each(
    items: Sequence[_File], act: Callable[[_File], Awaitable[None]], parallel: int
) -> None:
    """`act` on every item, at most `parallel` at once; the first error stops the rest."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:  # one shared iterator: each item is taken once
            await act(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(parallel, len(items))):
                group.create_task(worker())
    except* (OSError, asyncssh.Error, _SizeMismatch) as failures:
        raise _most_telling(failures.exceptions) from None


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
        if exc.code in _CONNECTION_GONE:
            return Unknown(f"connection lost: {exc.reason}")
        return TransferFailed(exc.reason)
    if isinstance(exc, asyncssh.Error | ConnectionError | TimeoutError):
        return Unknown(f"connection lost: {getattr(exc, 'reason', '') or type(exc).__name__}")
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


def _manifest(files: Iterable[_File]) -> bytes:
    listing = sorted([f.relpath, f.size, f.mtime_ns] for f in files)
    return json.dumps({"manifest": 1, "files": listing}, ensure_ascii=False).encode() + b"\n"


def _parse_manifest(data: bytes) -> list[_File]:
    """Files listed by a manifest; ValueError if it is not one of ours."""
    try:
        listing = json.loads(data)["files"]
        return [_File(str(path), int(size), int(mtime), "") for path, size, mtime in listing]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a transfer manifest: {exc}") from None


def _done(files: Sequence[_File], started: float, *, reused: bool = False) -> Transferred:
    seconds = time.monotonic() - started
    return Transferred(len(files), sum(f.size for f in files), seconds, reused)


def _glob_parts(glob: str) -> tuple[str, ...]:
    parts = tuple(part for part in glob.split("/") if part not in ("", "."))
    if not parts or glob.startswith("/") or ".." in parts:
        raise ValueError(f"result glob {glob!r} must be relative to the case folder")
    return parts


def _matches(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether path `parts` match glob `pattern`; ``**`` spans any number of folders."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, parts[index:]) for index in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _matches(rest, parts[1:])


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
