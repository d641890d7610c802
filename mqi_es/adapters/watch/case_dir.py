"""Case folders: what a case holds, read without trusting it.

A case arrives as a top-level directory of the watch folder, often copied by another machine
over a network share, so nothing here trusts events, clocks of other machines or file
contents. ``fingerprint`` records (relative path, size, mtime_ns) of every file without
reading any content, and reports what would make an upload unsafe (temporary names, symlinks
leaving the case, special files, unreadable entries); ``CaseFolders`` checks a case against
the fingerprint it was registered with before it is sent. Stdlib only.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from mqi_es.adapters.watch.case_names import is_temporary_name, unsendable_name

_FILE_RECORD = struct.Struct("<qq")


class ProblemKind(enum.Enum):
    """What makes a case unsafe to upload, most serious first (the first one names a hold)."""

    SYMLINK_OUTSIDE = "symlink points outside the case"
    SYMLINK_BROKEN = "broken symlink"
    SYMLINK_TO_DIRECTORY = "symlink to a directory"
    SPECIAL_FILE = "special file (not a regular file)"
    UNSAFE_NAME = "file name not UTF-8 or with a control character"
    UNREADABLE = "unreadable entry"
    TEMPORARY_NAME = "temporary files present"


_SEVERITY = {kind: rank for rank, kind in enumerate(ProblemKind)}


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    relpath: str


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a case directory holds, by metadata only.

    ``entries`` are sorted ``(relpath, size, mtime_ns)`` of every regular file (a symlink to a
    file inside the case counts with its target's size and mtime, as an upload would copy it).
    The ready marker, when one is configured, is left out of ``entries``, counts and digest:
    writing it must not restart the quiet period, and ``verify_unchanged`` compares the data
    alone. Directories alone are not files.
    """

    entries: tuple[tuple[str, int, int], ...]
    file_count: int
    total_bytes: int
    digest: str
    problems: tuple[Problem, ...]
    marker_present: bool

    def same_as(self, other: Fingerprint) -> bool:
        """Same files and same problems (the marker is not compared)."""
        return self.digest == other.digest and self.problems == other.problems


def fingerprint(path: str | os.PathLike[str], *, ready_marker: str | None = None) -> Fingerprint:
    """Scan the case directory at ``path`` (``os.scandir``, no content read, no link followed).

    :param ready_marker: a file name at the top of the case that is recorded as
        ``marker_present`` and left out of the entries.
    :raises FileNotFoundError: ``path`` does not exist.
    :raises NotADirectoryError: ``path`` is not a directory (a symlink to one included).
    """
    root = os.fspath(path)
    scan = _Scan(root, os.path.realpath(root), ready_marker)
    try:
        is_dir = stat.S_ISDIR(os.lstat(root).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError:  # e.g. a stale network handle: say so rather than crash the caller
        scan.problems.append(Problem(ProblemKind.UNREADABLE, "."))
    else:
        if not is_dir:
            raise NotADirectoryError(root)
        scan.walk()
    entries = tuple(sorted(scan.entries))
    digest = hashlib.blake2b(digest_size=16)
    for relpath, size, mtime_ns in entries:
        digest.update(os.fsencode(relpath) + b"\0" + _FILE_RECORD.pack(size, mtime_ns))
    return Fingerprint(
        entries=entries,
        file_count=len(entries),
        total_bytes=sum(size for _, size, _ in entries),
        digest=digest.hexdigest(),
        problems=tuple(sorted(scan.problems, key=lambda p: (_SEVERITY[p.kind], p.relpath))),
        marker_present=scan.marker_present,
    )


class _Scan:
    """One iterative walk of a case tree, collecting entries and problems."""

    def __init__(self, root: str, real_root: str, ready_marker: str | None) -> None:
        self.root = root
        self.real_root = real_root
        self.inside_prefix = real_root.rstrip(os.sep) + os.sep
        self.ready_marker = ready_marker
        self.entries: list[tuple[str, int, int]] = []
        self.problems: list[Problem] = []
        self.marker_present = False

    def walk(self) -> None:
        pending = [("", self.root)]
        while pending:
            relpath, path = pending.pop()
            try:
                with os.scandir(path) as listing:
                    for entry in listing:
                        child = f"{relpath}/{entry.name}" if relpath else entry.name
                        self._visit(entry, child, pending)
            except (FileNotFoundError, NotADirectoryError):
                if not relpath:
                    raise  # the case itself is gone; a vanished subdirectory is just absent
            except OSError:
                self.problems.append(Problem(ProblemKind.UNREADABLE, relpath or "."))

    def _visit(self, entry: os.DirEntry[str], relpath: str, pending: list[tuple[str, str]]) -> None:
        is_marker = relpath == self.ready_marker
        if is_temporary_name(entry.name) and not is_marker:
            self.problems.append(Problem(ProblemKind.TEMPORARY_NAME, relpath))
        if unsendable_name(entry.name):  # an upload would refuse it
            self.problems.append(Problem(ProblemKind.UNSAFE_NAME, relpath))
        try:
            if entry.is_symlink():
                self._visit_symlink(entry.path, relpath)
            elif entry.is_dir(follow_symlinks=False):
                pending.append((relpath, entry.path))
            elif entry.is_file(follow_symlinks=False):
                if is_marker:
                    self.marker_present = True
                else:
                    self._record(relpath, entry.stat(follow_symlinks=False))
            else:
                self.problems.append(Problem(ProblemKind.SPECIAL_FILE, relpath))
        except FileNotFoundError:
            pass  # removed while scanning: the next fingerprint will not have it either
        except OSError:
            self.problems.append(Problem(ProblemKind.UNREADABLE, relpath))

    def _visit_symlink(self, path: str, relpath: str) -> None:
        resolved = os.path.realpath(path)
        if resolved != self.real_root and not resolved.startswith(self.inside_prefix):
            self.problems.append(Problem(ProblemKind.SYMLINK_OUTSIDE, relpath))
            return
        try:
            target = Path(path).stat()
        except OSError:  # missing target or a loop
            self.problems.append(Problem(ProblemKind.SYMLINK_BROKEN, relpath))
            return
        if stat.S_ISDIR(target.st_mode):
            # An upload would follow it: duplicated data, or endless recursion on a cycle.
            self.problems.append(Problem(ProblemKind.SYMLINK_TO_DIRECTORY, relpath))
        elif stat.S_ISREG(target.st_mode):
            self._record(relpath, target)
        else:
            self.problems.append(Problem(ProblemKind.SPECIAL_FILE, relpath))

    def _record(self, relpath: str, st: os.stat_result) -> None:
        self.entries.append((relpath, st.st_size, st.st_mtime_ns))


def verify_unchanged(
    path: str | os.PathLike[str], expected_digest: str, *, ready_marker: str | None = None
) -> bool:
    """Whether the case at ``path`` still holds exactly the files it was registered with.

    Called before an upload: a case edited after registration must not be sent silently.
    Pass the same ``ready_marker`` as the intake so the marker is ignored on both sides.

    :raises FileNotFoundError: the case directory is gone.
    :raises NotADirectoryError: ``path`` is no longer a directory.
    """
    return fingerprint(path, ready_marker=ready_marker).digest == expected_digest


@dataclass(frozen=True, slots=True)
class CaseFolders:
    """The case folders of the watch folder, as the daemon sends them
    (``mqi_es.app.ports.CaseFolders``)."""

    root: Path
    ready_marker: str | None = None

    def path(self, case_id: str) -> Path:
        return self.root / case_id

    def changed(self, case_id: str, registered: str) -> str | None:
        """Why the case must not be sent as it is now, if it must not: its files differ
        from the fingerprint it was ``registered`` with, or cannot be read (a full scan
        of the folder: run it off the event loop)."""
        try:
            unchanged = verify_unchanged(
                self.path(case_id), registered, ready_marker=self.ready_marker
            )
        except OSError as e:
            return f"the case folder cannot be read: {e.strerror or e}"
        if unchanged:
            return None
        return "its content changed after registration; waiting until it is stable again"
