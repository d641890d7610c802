"""Download: a case's results from the node, each local copy checked against the node's."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import asyncssh

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.transfer._shared import (
    MANIFEST,
    PART,
    PART_NAME,
    NoMatches,
    Progress,
    TransferFailed,
    Transferred,
    _check_parallel,
    _Conflict,
    _done,
    _each,
    _failure,
    _File,
    _manifest,
    _Meter,
    _parse_manifest,
    _remote_absolute,
    _remote_files,
    _SizeMismatch,
    node_digests,
)
from mqi_es.adapters.ssh.transfer.case_reader import file_digest
from mqi_es.core.outcome import Unknown


async def download_results(
    conn: HostConnection,
    remote_dir: str,
    globs: Sequence[str],
    local_dir: Path,
    *,
    parallel: int = 8,
    progress: Progress | None = None,
) -> Transferred | NoMatches | TransferFailed | Unknown:
    """Copy the files of `remote_dir` that match `globs` into `local_dir`, all or nothing,
    each local copy checked against the SHA-256 the node computes of its own.

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
            files, digests = await asyncio.to_thread(_check_local_copy, local_dir)
            return _done(files, digests, started, reused=True)
    except _Conflict as exc:  # ours to sort out: the node's results are safe
        return TransferFailed(f"{exc}: move it away to fetch the results again", local=True)
    sftp = await conn.sftp()
    if isinstance(sftp, Unknown):
        return sftp
    home = await conn.home()
    if isinstance(home, Unknown):
        return home
    source = _remote_absolute(remote_dir, home)
    part = local_dir.with_name(f"{local_dir.name}{PART}{secrets.token_hex(6)}")
    try:
        found = await _remote_files(sftp, source)
        files = [f for f in found if any(_matches(p, f.relpath.split("/")) for p in patterns)]
        if not files:
            return NoMatches(tuple(globs))
        expected = await node_digests(conn, source, files)
        if not isinstance(expected, dict):
            return expected
        await asyncio.to_thread(_prepare_local_part, local_dir, part, files)
        meter = _Meter(sum(f.size for f in files), progress)

        async def fetch(file: _File) -> None:
            destination = part / file.relpath
            await sftp.get(file.source, destination, progress_handler=meter.handler())
            size = destination.stat().st_size
            if size != file.size:
                raise _SizeMismatch(file.relpath, file.size, size)

        await _each(files, fetch, parallel)
        digests = await asyncio.to_thread(_local_digests, part, files)
        differing = [f.relpath for f in files if digests[f.relpath] != expected[f.relpath]]
        if differing:
            await asyncio.to_thread(shutil.rmtree, part, True)
            return Unknown(
                f"{conn.target.name}: {len(differing)} result file(s) arrived different from "
                f"the node's copy (first: {differing[0]}); fetching again"
            )
        manifest = _manifest(files, digests)
        await asyncio.to_thread(_seal_local_part, part, local_dir, manifest)
    except (OSError, asyncssh.Error, _SizeMismatch, UnicodeError) as exc:
        # UnicodeError: a remote file name that is not UTF-8.
        await asyncio.to_thread(shutil.rmtree, part, True)
        return await _failure(conn, "download", exc, sftp, None)
    return _done(files, digests, started, manifest=manifest)


def _prepare_local_part(local_dir: Path, part: Path, files: Iterable[_File]) -> None:
    """Remove stale ``.part-*`` siblings (of any attempt), then create `part` and its
    folders owner-only."""
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in local_dir.parent.iterdir():
        if PART_NAME.fullmatch(stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    part.mkdir(mode=0o700)
    for file in files:
        folder = part
        for name in PurePosixPath(file.relpath).parts[:-1]:
            folder = folder / name
            folder.mkdir(mode=0o700, exist_ok=True)


def _local_digests(folder: Path, files: Iterable[_File]) -> dict[str, str]:
    return {f.relpath: file_digest(folder / f.relpath) for f in files}


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


def _check_local_copy(local_dir: Path) -> tuple[list[_File], dict[str, str]]:
    """The files of a complete earlier download, each read again and checked against its
    manifest digest, or _Conflict."""
    try:
        files, digests = _parse_manifest((local_dir / MANIFEST).read_bytes())
        intact = all((local_dir / f.relpath).stat().st_size == f.size for f in files)
        intact = intact and _local_digests(local_dir, files) == digests
    except (OSError, ValueError):
        intact = False
    if not intact:
        raise _Conflict(f"{local_dir} exists but is not a complete download")
    return files, digests


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
