"""Reading a case folder for an upload: what is in it, and each file exactly as it is read.

``scan_case`` lists a case folder (links resolved, refusing what must not leave). Then a
``CaseReader`` opens every file relative to the case folder, one path component at a time
and never following a link (``O_NOFOLLOW``), so a file swapped for a link after the scan is
refused; it hashes the bytes as they are read (SHA-256, one read per file) and checks with
``fstat`` before and after that the file did not change meanwhile. What a reader returns is
therefore byte for byte what is in the file, or ``TransferRefused``.

Everything here is blocking file I/O: callers run it in a worker thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

from mqi_es.adapters.watch.case_names import show_name, unsendable_name
from mqi_es.core.errors import CaseError

SMALL_FILE = 1024 * 1024  # up to this size a file is read whole and sent in one write
CHUNK = 4 * 1024 * 1024  # larger files are read, hashed and sent in pieces of this size


class TransferRefused(CaseError):
    """Raised when a case folder cannot be sent as it is (a link out of the case, a file
    that changed while it was read, ...)."""


@dataclass(frozen=True, slots=True)
class CaseFile:
    relpath: str  # POSIX, relative to the case folder: where it goes on the node
    size: int
    mtime_ns: int  # tells a re-exported case from a retry of the same one
    source: str  # what to read: the real file, relative to the case folder (a link's target)


def scan_case(local_dir: Path, *, reserved: frozenset[str]) -> tuple[list[str], list[CaseFile]]:
    """Folders (parents first) and files of a case, links resolved; refuse what must not go.

    :param reserved: names of our own control files, which a case may not hold
    :raises TransferRefused: a link out of the case, a broken link or a loop, a special
        file, a name that is not UTF-8 or holds a control character, a reserved name
    :raises OSError: the folder cannot be read
    """
    root = local_dir.resolve(strict=True)
    dirs: list[str] = []
    files: list[CaseFile] = []

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
                source = path.relative_to(root).as_posix()
                files.append(CaseFile(str(relpath), info.st_size, info.st_mtime_ns, source))
            else:
                raise TransferRefused(f"{relpath} is neither a regular file nor a folder")

    top = root.stat()
    walk(root, PurePosixPath(), frozenset({(top.st_dev, top.st_ino)}))
    for file in files:
        if file.relpath in reserved:
            raise TransferRefused(f"{file.relpath} is a name reserved for the transfer manifest")
    return dirs, files


def _check_name(name: str, relpath: PurePosixPath) -> None:
    problem = unsendable_name(name)
    if problem is not None:
        raise TransferRefused(f"{show_name(str(relpath))} {problem}")


class CaseReader:
    """Reads the files of one scanned case folder, each relative to the folder itself.

    Use as a context manager; the folder stays open (by descriptor) until it is left.
    """

    def __init__(self, local_dir: Path) -> None:
        self._root = os.open(local_dir.resolve(strict=True), os.O_RDONLY | os.O_DIRECTORY)

    def __enter__(self) -> CaseReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        os.close(self._root)

    def read_whole(self, file: CaseFile) -> tuple[bytes, str]:
        """A small file's bytes and their SHA-256 (read to its end: a network file system
        may return fewer bytes than asked at a time)."""
        opened = self.open(file)
        try:
            pieces = []
            while piece := opened.read(CHUNK):
                pieces.append(piece)
            return b"".join(pieces), opened.finish()
        finally:
            opened.close()

    def digest(self, file: CaseFile) -> str:
        """The SHA-256 of a file, read the same careful way (nothing is sent)."""
        opened = self.open(file)
        try:
            while opened.read(CHUNK):
                pass
            return opened.finish()
        finally:
            opened.close()

    def open(self, file: CaseFile) -> OpenCaseFile:
        """Open ``file`` without following any link, and check it is what was scanned.

        :raises TransferRefused: it is gone, a link now, not a regular file, or changed.
        """
        parts = file.source.split("/")
        folder = self._root
        try:
            for part in parts[:-1]:
                inner = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                    dir_fd=folder,
                )  # fmt: skip
                if folder != self._root:
                    os.close(folder)
                folder = inner
            fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
            )
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise TransferRefused(
                    f"{file.relpath} was replaced by a symbolic link after it was checked"
                ) from None
            if exc.errno == errno.ENOENT:
                raise TransferRefused(f"{file.relpath} was removed after it was checked") from None
            raise
        finally:
            if folder != self._root:
                os.close(folder)
        opened = OpenCaseFile(fd, file)
        try:
            opened.check_opened()
        except BaseException:
            opened.close()
            raise
        return opened


class OpenCaseFile:
    """One case file being read: hashed as read, checked unchanged at the end."""

    def __init__(self, fd: int, file: CaseFile) -> None:
        self.fd = fd
        self.file = file
        self._sha = hashlib.sha256()
        self._read = 0
        self._at_open = os.fstat(fd)

    def check_opened(self) -> None:
        now = self._at_open
        if not stat.S_ISREG(now.st_mode):
            raise TransferRefused(f"{self.file.relpath} is no longer a regular file")
        if (now.st_size, now.st_mtime_ns) != (self.file.size, self.file.mtime_ns):
            raise TransferRefused(f"{self.file.relpath} changed after it was checked")

    def read(self, limit: int) -> bytes:
        data = os.read(self.fd, limit)
        self._sha.update(data)
        self._read += len(data)
        return data

    def finish(self) -> str:
        """The SHA-256 of what was read, if the file stayed as it was throughout.

        :raises TransferRefused: it changed while it was read (size, time, inode status).
        """
        before, after = self._at_open, os.fstat(self.fd)
        same = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (
            after.st_size, after.st_mtime_ns, after.st_ctime_ns,
        )  # fmt: skip
        if not same or self._read != before.st_size:
            raise TransferRefused(f"{self.file.relpath} changed while it was being sent")
        return self._sha.hexdigest()

    def close(self) -> None:
        os.close(self.fd)


def file_digest(path: Path) -> str:
    """The SHA-256 of a local file (results), read once."""
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()
