"""The stability gate: when a candidate directory is a complete case. A pure state machine,
fed observations and the time of the last change signal (time is always a parameter), that
answers not yet / stable / held / gone. Stdlib only: no clock reads, no watchfiles."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mqi_es.adapters.watch.case_dir import Fingerprint


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
