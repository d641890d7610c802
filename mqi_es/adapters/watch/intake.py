"""Case intake: the watch folder, turned into exactly one report per case.

Each top-level directory of the watch folder is a candidate case named by its directory. The
truth is always the listing of the folder and the fingerprint of each candidate tree, judged by
one ``StabilityGate`` whether the candidate was found by the start-up scan, a watch event or a
periodic rescan. Watch events are only hints that make us look sooner.

The watch is deliberately NOT recursive. Inside a case, inotify misses the contents of a
quickly created nested tree, and sees nothing of writes made by other machines on a network
share; so readiness never depends on events from inside a case. A settling candidate is
re-fingerprinted at least every ``min(1 s, quiescence / 2)``, which bounds the latency from the
last write to registration by about ``quiescence + 1 s`` in both modes, and registered cases
cost nothing: no inotify watch, no polling of their files, and rescans skip them by name.

Other watchfiles pitfalls handled here: the watcher goes silent for good when the watch root is
deleted and recreated (a deletion event on the root, or a change of its identity, checked every
``min(1 s, rescan_interval)``, restarts the watcher), and it dies on a name that is not UTF-8
(it is restarted with a bounded backoff, and the folder listed again).

Top-level entries that are not cases are ignored with one log line each: plain files,
symlinks, and temporary names (``.staging``, ``x.part``), which are expected to be renamed
into place.

Reports to the sink: ``case_ready`` once per case; ``case_refused`` and ``case_held`` once per
distinct (name, reason). ``is_known`` is asked with the case id of a valid name and with the
printable form of a refused one, so a restart neither registers nor refuses anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, awatch

from mqi_es.adapters.watch.case_dir import Fingerprint, fingerprint
from mqi_es.adapters.watch.case_names import (
    NameRefused,
    is_temporary_name,
    show_name,
    validate_case_name,
)
from mqi_es.adapters.watch.reports import IntakeSink, Reporter
from mqi_es.adapters.watch.stability import (
    GONE,
    Gone,
    Held,
    NotYet,
    StabilityGate,
    Stable,
    Vanished,
    Watching,
)
from mqi_es.core import backoff
from mqi_es.core.errors import ConfigError

__all__ = ["Intake"]

logger = logging.getLogger(__name__)

_PROBE_CAP_SECONDS = 1.0  # a settling candidate is fingerprinted at least this often
_ROOT_CHECK_CAP_SECONDS = 1.0  # the root's identity is checked at least this often
_RETRY_FIRST_SECONDS = 0.25  # backoff for a missing root or a failing watcher: first delay
_RETRY_CAP_SECONDS = 10.0  # and its bound
_DEBOUNCE_MS = 400
_STEP_MS = 50

_IN_TRANSIT = "temporary name, still in transit"

_RootIdentity = tuple[int, int]


@dataclass(slots=True)
class _Candidate:
    """A directory under watch that is neither registered nor refused yet."""

    state: Watching | None = None
    check_at: float = 0.0
    last_change: float | None = None


class Intake:
    """Watches one folder and reports each case in it exactly once.

    :param watch_path: the watch folder; it must exist when ``run`` starts.
    :param quiescence: seconds a candidate must stay unchanged before it is judged.
    :param force_polling: poll instead of inotify (required on NFS/SMB shares).
    :param poll_delay_ms: polling period when ``force_polling`` is set.
    :param ready_marker: file name that must be present at the top of a case before it is
        registered (left out of the fingerprint); None to rely on quiescence alone.
    :param rescan_interval: seconds between full listings of the folder, which catch
        anything the watcher missed; held cases are looked at again this often at most.
    :param is_known: whether a case id (or a refused name's printable form) was already
        registered (or refused), typically answered from the event store.
    :param sink: receives the reports.
    :raises ConfigError: an option is out of range.
    """

    def __init__(
        self,
        watch_path: str | os.PathLike[str],
        *,
        quiescence: float,
        force_polling: bool = False,
        poll_delay_ms: int = 1000,
        ready_marker: str | None = None,
        rescan_interval: float = 30.0,
        is_known: Callable[[str], bool],
        sink: IntakeSink,
    ) -> None:
        if not quiescence > 0:
            raise ConfigError(f"quiescence must be positive, not {quiescence!r}")
        if not rescan_interval > 0:
            raise ConfigError(f"rescan interval must be positive, not {rescan_interval!r}")
        if not poll_delay_ms > 0:
            raise ConfigError(f"poll delay must be positive, not {poll_delay_ms!r}")
        if ready_marker is not None and not _is_plain_file_name(ready_marker):
            raise ConfigError(f"ready marker '{show_name(ready_marker)}' is not a plain file name")
        self._root = Path(watch_path).absolute()  # not resolved: a re-pointed symlink is noticed
        self._root_str = str(self._root)
        self._prefix = self._root_str.rstrip(os.sep) + os.sep
        self._gate = StabilityGate(quiescence, ready_marker)
        self._force_polling = force_polling
        self._poll_delay_ms = poll_delay_ms
        self._ready_marker = ready_marker
        self._rescan_interval = rescan_interval
        self._probe_interval = min(_PROBE_CAP_SECONDS, quiescence / 2)
        self._held_recheck = min(rescan_interval, quiescence)
        self._root_check_interval = min(_ROOT_CHECK_CAP_SECONDS, rescan_interval)
        self._reports = Reporter(sink, is_known)

        self._candidates: dict[str, _Candidate] = {}
        self._settled: set[str] = set()  # registered, known or refused: never looked at again
        self._ignored: dict[str, str] = {}  # name -> reason already logged
        self._listing_error: str | None = None
        self._wake = asyncio.Event()
        self._listing_due = False
        self._root_touched = False
        self._root_deleted = False

    async def run(self) -> None:
        """Watch until cancelled.

        :raises ConfigError: the watch folder is missing, not a directory, or cannot be
            listed at start-up. Later losses of the folder are logged once and waited out.
        """
        identity = self._require_root()
        while True:
            await self._serve(identity)
            self._candidates.clear()  # they lived in the old folder; a listing finds them again
            identity = await self._await_root()

    # --- the watch folder ------------------------------------------------------------------

    def _require_root(self) -> _RootIdentity:
        identity, problem = self._probe_root()
        if identity is None:
            raise ConfigError(f"watch folder {self._root_str} {problem}")
        try:
            os.scandir(self._root_str).close()
        except OSError as exc:
            message = f"watch folder {self._root_str} cannot be listed: {exc.strerror}"
            raise ConfigError(message) from None
        return identity

    def _probe_root(self) -> tuple[_RootIdentity | None, str | None]:
        try:
            st = self._root.stat()
        except FileNotFoundError:
            return None, "does not exist"
        except OSError as exc:
            return None, f"cannot be read: {exc.strerror}"
        if not stat.S_ISDIR(st.st_mode):
            return None, "is not a directory"
        return (st.st_dev, st.st_ino), None

    async def _await_root(self) -> _RootIdentity:
        """Wait, with a bounded backoff, until the lost watch folder exists again."""
        failures = 0
        reported = False
        while True:
            identity, problem = self._probe_root()
            if identity is not None:
                how = "is back" if reported else "was replaced"
                logger.warning("watch folder %s %s; watching it again", self._root_str, how)
                return identity
            if not reported:
                logger.error("watch folder %s %s; retrying", self._root_str, problem)
                reported = True
            failures += 1
            await asyncio.sleep(
                backoff.delay(failures, base=_RETRY_FIRST_SECONDS, cap=_RETRY_CAP_SECONDS)
            )

    async def _serve(self, identity: _RootIdentity) -> None:
        """Watch the folder with this identity until it is replaced or gone."""
        stop = asyncio.Event()
        watcher = asyncio.create_task(self._watch(stop), name="intake-watcher")
        await asyncio.sleep(0)  # let the watcher arm itself before the first listing
        try:
            await self._reconcile(identity)
        finally:
            stop.set()
            await watcher  # returns within one watchfiles step once stop is set

    async def _reconcile(self, identity: _RootIdentity) -> None:
        now = time.monotonic()
        next_root_check = now + self._root_check_interval
        next_rescan = now  # the start-up scan
        while True:
            self._wake.clear()
            now = time.monotonic()
            if self._root_touched or now >= next_root_check:
                self._root_touched = False
                if self._root_deleted or self._probe_root()[0] != identity:
                    self._root_deleted = False
                    return
                next_root_check = now + self._root_check_interval
            if self._listing_due or now >= next_rescan:
                self._listing_due = False
                listed = await self._take_listing(now)
                next_rescan = now + (self._rescan_interval if listed else self._root_check_interval)
            await self._judge_due()
            wake_at = min(
                next_root_check, next_rescan, *(c.check_at for c in self._candidates.values())
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wake_at - time.monotonic())):
                    await self._wake.wait()

    # --- watch events (hints only) ---------------------------------------------------------

    async def _watch(self, stop: asyncio.Event) -> None:
        failures = 0
        last_failure = None
        while not stop.is_set():
            if failures:
                # Arrivals while it was down left no event: list once it is armed again (the
                # listing runs when this task yields, after awatch has set its watch up).
                self._listing_due = True
                self._wake.set()
            try:
                async for changes in awatch(
                    self._root,
                    watch_filter=self._wants,
                    recursive=False,
                    force_polling=self._force_polling,
                    poll_delay_ms=self._poll_delay_ms,
                    debounce=_DEBOUNCE_MS,
                    step=_STEP_MS,
                    stop_event=stop,
                ):
                    failures = 0
                    self._on_changes(changes)
                return
            # The watcher is only a hint, and watchfiles fails in many ways (a name that is not
            # UTF-8, a missing root, the inotify watch limit): whatever it raises, list the
            # folder again and restart it after a bounded backoff.
            except Exception as exc:
                failures += 1
                failure = _describe(exc)
                # A lost root is the root check's to report, once.
                if failure != last_failure and self._probe_root()[0] is not None:
                    logger.warning("watcher of %s failed (%s); restarting", self._root_str, failure)
                    last_failure = failure
                self._root_touched = self._listing_due = True
                self._wake.set()
                wait = backoff.delay(failures, base=_RETRY_FIRST_SECONDS, cap=_RETRY_CAP_SECONDS)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await stop.wait()

    def _top_name(self, path: str) -> str | None:
        """Name of the top-level entry a watched path belongs to; None for the root itself."""
        if not path.startswith(self._prefix):
            return None
        return path[len(self._prefix) :].split(os.sep, 1)[0] or None

    def _wants(self, change: Change, path: str) -> bool:
        return self._top_name(path) not in self._settled

    def _on_changes(self, changes: set[tuple[Change, str]]) -> None:
        now = time.monotonic()
        for change, path in changes:
            name = self._top_name(path)
            candidate = self._candidates.get(name) if name is not None else None
            if name is None:
                self._root_touched = True
                # The root's inode number may be reused at once by its successor, which an
                # identity check cannot tell apart: its deletion alone means a new watcher.
                self._root_deleted = self._root_deleted or change == Change.deleted
            elif candidate is not None:
                candidate.last_change = now
                candidate.check_at = now  # fingerprint the whole tree after any event
            else:
                self._listing_due = True
        self._wake.set()

    # --- the listing -----------------------------------------------------------------------

    async def _take_listing(self, now: float) -> bool:
        """Reconcile the folder's entries with what we track; False if it could not be listed."""
        try:
            listing = await asyncio.to_thread(_list_entries, self._root_str)
        except OSError as exc:
            if exc.strerror != self._listing_error:
                logger.error("watch folder %s cannot be listed: %s", self._root_str, exc.strerror)
                self._listing_error = exc.strerror
            return False
        self._listing_error = None
        present = set()
        for name, ignore in listing:
            present.add(name)
            if name not in self._settled and name not in self._candidates:
                self._classify(name, ignore, now)
        for name in self._candidates.keys() - present:
            self._forget(name)
        self._settled &= present
        self._ignored = {name: why for name, why in self._ignored.items() if name in present}
        self._reports.keep_only(present)
        return True

    def _classify(self, name: str, ignore: str | None, now: float) -> None:
        if ignore is not None:
            if self._ignored.get(name) != ignore:
                level = logging.INFO if ignore == _IN_TRANSIT else logging.WARNING
                logger.log(level, "ignoring '%s' in the watch folder: %s", show_name(name), ignore)
                self._ignored[name] = ignore
            return
        self._ignored.pop(name, None)
        verdict = validate_case_name(name)
        if isinstance(verdict, NameRefused):
            if self._reports.refused(verdict):
                self._settled.add(name)
            return
        known = self._reports.known(verdict)
        if known:
            self._settled.add(name)
        elif known is not None:
            self._candidates[name] = _Candidate(check_at=now)

    # --- judging candidates ----------------------------------------------------------------

    async def _judge_due(self) -> None:
        now = time.monotonic()
        due = [name for name, c in self._candidates.items() if c.check_at <= now]
        if not due:
            return
        for name, began, finished, seen in await asyncio.to_thread(self._observe, due):
            candidate = self._candidates.get(name)
            if candidate is not None:  # may have been forgotten by a listing meanwhile
                self._judge(name, candidate, began, finished, seen)

    def _observe(self, names: list[str]) -> list[tuple[str, float, float, Fingerprint | Gone]]:
        """Fingerprint candidates (runs in a worker thread)."""
        seen: list[tuple[str, float, float, Fingerprint | Gone]] = []
        for name in names:
            began = time.monotonic()
            try:
                result: Fingerprint | Gone = fingerprint(
                    self._root / name, ready_marker=self._ready_marker
                )
            except (FileNotFoundError, NotADirectoryError):
                result = GONE
            seen.append((name, began, time.monotonic(), result))
        return seen

    def _judge(
        self,
        name: str,
        candidate: _Candidate,
        began: float,
        finished: float,
        seen: Fingerprint | Gone,
    ) -> None:
        state, verdict = self._gate.observe(
            candidate.state, finished, seen, candidate.last_change, scan_began=began
        )
        match verdict:
            case Vanished():
                logger.info("'%s' disappeared before it was complete", name)
                self._forget(name)
                return
            case NotYet(recheck_at):
                candidate.check_at = min(recheck_at, finished + self._probe_interval)
            case Held():
                self._reports.held(name, verdict)
                candidate.check_at = finished + self._held_recheck
            case Stable(fp):
                if self._reports.ready(name, self._root / name, fp):
                    del self._candidates[name]
                    self._settled.add(name)
                    return
                candidate.check_at = finished + self._gate.quiescence
        candidate.state = state

    def reconsider(self, case_id: str) -> None:
        """Watch a registered case again until it is stable; its next ``case_ready`` is the
        daemon's cue to release it (it was held: its content changed after registration)."""
        self._settled.discard(case_id)
        self._listing_due = True
        self._wake.set()

    def _forget(self, name: str) -> None:
        """Drop a candidate that disappeared: it leaves nothing behind."""
        self._candidates.pop(name, None)
        self._reports.forget(name)


def _is_plain_file_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and name.isprintable()


def _list_entries(root: str) -> list[tuple[str, str | None]]:
    """Top-level entries, each with the reason to ignore it (None for a candidate)."""
    with os.scandir(root) as listing:
        return [(entry.name, _ignore_reason(entry)) for entry in listing]


def _ignore_reason(entry: os.DirEntry[str]) -> str | None:
    if entry.is_symlink():
        return "a symlink; a case must be a real directory"
    if not entry.is_dir(follow_symlinks=False):
        return "not a directory"
    if is_temporary_name(entry.name):
        return _IN_TRANSIT  # e.g. staged under a hidden name, then renamed into place
    return None


def _describe(exc: BaseException) -> str:
    """One printable line for an exception, looking inside exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return show_name(f"{type(exc).__name__}: {exc}")
