"""What the intake tells the application, each report made once and retried until taken.

A report counts as made only when the sink's call returned: one that raises is logged once
(then counted) and made again at the next look. ``is_known`` is asked before each report,
with the case id of a valid name or the printable form of a refused one, so a restart never
reports anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mqi_es.adapters.local.repeats import Repeats
from mqi_es.adapters.watch.case_dir import Fingerprint
from mqi_es.adapters.watch.case_names import Accepted, NameRefused, show_name
from mqi_es.adapters.watch.stability import Held

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A case directory found complete and stable, ready to be registered."""

    case_id: str
    path: Path
    file_count: int
    total_bytes: int
    digest: str


class IntakeSink(Protocol):
    """Where the intake reports; the application records each report as an event.

    Calls come from the event loop and should be quick. A call that raises is logged and
    retried later: nothing counts as reported until the call returned.
    """

    def case_ready(self, arrival: Arrival) -> None: ...

    def case_refused(self, raw_name_repr: str, reason: str) -> None: ...

    def case_held(self, name: str, reason: str, found: Fingerprint) -> None: ...


class Reporter:
    """Makes the intake's reports: a case ready once, a refusal or a hold once per reason."""

    def __init__(self, sink: IntakeSink, is_known: Callable[[str], bool]) -> None:
        self._sink = sink
        self._is_known = is_known
        self._repeats = Repeats(logger)  # a failing sink is logged once, not every retry
        self._held: dict[str, set[str]] = {}  # name -> hold reasons already reported

    def known(self, name: Accepted | NameRefused) -> bool | None:
        """Whether the name was registered (or refused) already; None if that is unknown."""
        key = name.case_id if isinstance(name, Accepted) else name.shown
        try:
            known = self._is_known(key)
        except Exception as exc:
            self._repeats.failed(
                ("known", key), "could not tell whether '%s' is known (%r); will ask again",
                key, exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return None
        self._repeats.ended(("known", key))
        return known

    def refused(self, refused: NameRefused) -> bool:
        """Report a refusal unless already known; True once it needs no more attention."""
        known = self.known(refused)
        if known is None:
            return False
        if known:
            return True
        try:
            self._sink.case_refused(refused.shown, refused.reason)
        except Exception as exc:
            self._repeats.failed(
                ("refuse", refused.shown), "could not record the refusal of '%s' (%r); will "
                "retry", refused.shown, exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return False
        self._repeats.ended(("refuse", refused.shown))
        logger.warning("refused case directory '%s': %s", refused.shown, refused.reason)
        return True

    def held(self, name: str, held: Held) -> None:
        """Report a hold, once per reason while the candidate stays."""
        reported = self._held.setdefault(name, set())
        if held.reason in reported:
            return
        try:
            self._sink.case_held(name, held.reason, held.fingerprint)
        except Exception as exc:
            self._repeats.failed(
                ("hold", name), "could not record the hold of case '%s' (%r); will retry",
                name, exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return
        self._repeats.ended(("hold", name))
        reported.add(held.reason)
        logger.warning("holding case '%s': %s%s", name, held.reason, _hold_detail(held))

    def ready(self, name: str, path: Path, fp: Fingerprint) -> bool:
        """Report a stable case unless already known; True once it is registered."""
        known = self.known(Accepted(name))  # registered meanwhile by another path?
        if known:
            self.forget(name)
            return True
        if known is None:
            return False
        arrival = Arrival(name, path, fp.file_count, fp.total_bytes, fp.digest)
        try:
            self._sink.case_ready(arrival)
        except Exception as exc:
            self._repeats.failed(
                ("ready", name), "could not record the arrival of case '%s' (%r); will retry",
                name, exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return False
        self._repeats.ended(("ready", name))
        self.forget(name)
        logger.info(
            "case '%s' is ready (files: %d, bytes: %d)", name, fp.file_count, fp.total_bytes
        )
        return True

    def forget(self, name: str) -> None:
        """The candidate is gone or registered: a hold of a later one is reported anew."""
        self._held.pop(name, None)

    def keep_only(self, present: Iterable[str]) -> None:
        names = set(present)
        self._held = {name: why for name, why in self._held.items() if name in names}


def _hold_detail(held: Held) -> str:
    """Where the hold comes from: the first offending path, printable, and how many more."""
    paths = [p.relpath for p in held.fingerprint.problems if p.kind.value == held.reason]
    if not paths:
        return ""
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    return f" ('{show_name(paths[0])}'{more})"
