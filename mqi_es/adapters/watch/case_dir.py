"""Case directories: safe names, fingerprints and the stability gate.

A case arrives as a top-level directory of the watch folder, often copied by another machine
over a network share, so nothing here trusts events, clocks of other machines or file
contents:

- ``validate_case_name`` decides whether a directory name can serve as a case id, and
  ``show_name`` renders any name (even undecodable bytes) printable for logs and events.
- ``fingerprint`` records (relative path, size, mtime_ns) of every file without reading any
  content, and reports what would make an upload unsafe (temporary names, symlinks leaving the
  case, special files, unreadable entries).
- ``StabilityGate`` is a pure state machine: it is fed observations and the time of the last
  change signal (time is always a parameter) and answers not yet / stable / held / gone.

Stdlib only: no clock reads, no watchfiles.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GONE",
    "MAX_NAME_LENGTH",
    "TEMPORARY_SUFFIXES",
    "Accepted",
    "Fingerprint",
    "Gone",
    "Held",
    "NotYet",
    "Problem",
    "ProblemKind",
    "Refused",
    "StabilityGate",
    "Stable",
    "Vanished",
    "Verdict",
    "Watching",
    "fingerprint",
    "is_temporary_name",
    "show_name",
    "unsendable_name",
    "validate_case_name",
    "verify_unchanged",
]

MAX_NAME_LENGTH = 128
TEMPORARY_SUFFIXES = (".part", ".tmp", ".filepart", "~")
_FILE_RECORD = struct.Struct("<qq")


# --- names -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """A name that is safe as a case id."""

    case_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A name that is not a safe case id: ``shown`` is printable, ``reason`` says why."""

    shown: str
    reason: str


def validate_case_name(name: str | bytes) -> Accepted | Refused:
    """Accept ``name`` as a case id, or say why it is refused.

    ``name`` may be bytes (``os.listdir(b'...')``) or str (``os.listdir('...')``, where
    undecodable bytes arrive as surrogate escapes). The first rule broken gives the reason.
    """
    text = _decode_utf8(name)
    if text is None:
        return Refused(show_name(name), "name is not valid UTF-8")
    reason = _name_problem(text)
    return Refused(show_name(name), reason) if reason else Accepted(text)


def _decode_utf8(name: str | bytes) -> str | None:
    try:
        raw = name if isinstance(name, bytes) else os.fsencode(name)
        return raw.decode("utf-8")
    except UnicodeError:
        return None


def _name_problem(text: str) -> str | None:
    if not text:
        return "name is empty"
    if len(text) > MAX_NAME_LENGTH:
        return f"name is longer than {MAX_NAME_LENGTH} characters ({len(text)})"
    for separator in ("/", "\\"):
        if separator in text:
            return f"name contains a path separator ({separator!r})"
    if ".." in text:
        return "name contains '..'"
    for lead in (".", "-"):
        if text.startswith(lead):
            return f"name starts with {lead!r}"
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"name contains a control character (U+{ord(char):04X})"
        # Format, private-use, unassigned and most space characters would show up as nothing
        # or as something else: an accepted name must read in a log exactly as it is.
        if not char.isprintable():
            return f"name contains a non-printable character (U+{ord(char):04X})"
    if text != text.strip():
        return "name starts or ends with whitespace"
    return None


def show_name(name: str | bytes) -> str:
    """Render any file name printable and unambiguous, never emitting its raw bytes.

    Bytes that are not UTF-8 become ``\\xNN``, non-printable characters ``\\uNNNN`` (or
    ``\\UNNNNNNNN``) and a backslash is doubled, so distinct names always render differently.
    """
    if isinstance(name, bytes):
        raw = name
    else:
        try:
            raw = os.fsencode(name)
        except UnicodeError:  # lone surrogates that no file name can hold
            raw = name.encode("utf-8", "surrogatepass")
    out: list[str] = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, escaped by the decoder
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` looks like a file or directory still being written or staged."""
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


# --- fingerprint -------------------------------------------------------------------------


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


def unsendable_name(name: str | bytes) -> str | None:
    """Why a file of a case cannot be sent under this name (not UTF-8, or holding a
    control character, which no remote tool reads back safely), or None."""
    text = _decode_utf8(name)
    if text is None:
        return "has a name that is not UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "has a control character in its name: rename it"
    return None


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


# --- stability gate ----------------------------------------------------------------------


class Gone(enum.Enum):
    """The observed directory no longer exists."""

    GONE = "gone"


GONE = Gone.GONE


@dataclass(frozen=True, slots=True)
class Watching:
    """Gate state of one candidate: the last fingerprint and since when nothing changed."""

    fingerprint: Fingerprint
    since: float


@dataclass(frozen=True, slots=True)
class NotYet:
    """Still settling; look again at ``recheck_at`` at the latest."""

    recheck_at: float


@dataclass(frozen=True, slots=True)
class Stable:
    """Quiet, unchanged over a full window, clean: register it with this fingerprint."""

    fingerprint: Fingerprint


@dataclass(frozen=True, slots=True)
class Held:
    """Quiet but not acceptable as it stands (``reason``); it stays under watch."""

    reason: str
    fingerprint: Fingerprint


@dataclass(frozen=True, slots=True)
class Vanished:
    """The candidate disappeared before it was registered: forget it."""


Verdict = NotYet | Stable | Held | Vanished


@dataclass(frozen=True, slots=True)
class StabilityGate:
    """Decides when a candidate directory is a complete case.

    A candidate is judged only once it has been quiet for ``quiescence`` seconds: no change
    signal (watch event) and the same fingerprint observed at both ends of that window. The
    window starts at the first observation showing the current fingerprint, or at the last
    change signal if later, so a first observation is never enough and the mtimes written by
    other machines are never trusted as time. A quiet candidate is then held if it has a
    problem, no file, or (with ``ready_marker``) no marker yet; otherwise it is stable.
    Problems are not reported while a copy is still moving, so an ordinary transfer through
    ``*.part`` files never produces a hold.
    """

    quiescence: float
    ready_marker: str | None = None

    def __post_init__(self) -> None:
        if not self.quiescence > 0:
            raise ValueError(f"quiescence must be positive, not {self.quiescence!r}")

    def observe(
        self,
        state: Watching | None,
        now: float,
        seen: Fingerprint | Gone,
        last_change: float | None = None,
        *,
        scan_began: float | None = None,
    ) -> tuple[Watching | None, Verdict]:
        """Fold one observation, completed at ``now``, into ``state``.

        :param state: the state returned by the previous call, or None for a new candidate.
        :param seen: the fingerprint taken, or ``GONE``.
        :param last_change: time of the latest change signal for this candidate, if any.
        :param scan_began: when the scan behind ``seen`` began (default ``now``). A write made
            while the scan ran may be missing from it, so quiet is verified only up to here.
        :returns: the new state (None once gone) and the verdict.
        """
        if seen is GONE:
            return None, Vanished()
        unchanged = state is not None and state.fingerprint.same_as(seen)
        since = state.since if state is not None and unchanged else now
        if last_change is not None:
            since = max(since, last_change)
        watching = Watching(seen, since)
        verified_until = now if scan_began is None else min(scan_began, now)
        if verified_until < since + self.quiescence:
            return watching, NotYet(since + self.quiescence)
        reason = self._hold_reason(seen)
        return watching, (Held(reason, seen) if reason else Stable(seen))

    def _hold_reason(self, seen: Fingerprint) -> str | None:
        if seen.problems:
            return seen.problems[0].kind.value
        if seen.file_count == 0:
            return "no files"
        if self.ready_marker is not None and not seen.marker_present:
            return f"waiting for ready marker {self.ready_marker!r}"
        return None
