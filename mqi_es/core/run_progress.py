"""How far a running simulation is, read from the tail of its output.

MOQUI prints ``Generating particles for (k of N batches)`` as it goes (once per batch, and
again for each beam). The daemon reads the tails of all running tasks of a host in one
remote command every ``main_loop.progress_interval_seconds``; the latest reading is shown
live, and a reading is recorded in the case's history only when it reaches another tenth
of the run (at most eleven facts per beam, never one per line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# MOQUI's own line; a host whose program prints something else sets ``progress_pattern``.
MOQUI_PATTERN = r"Generating particles for \((?P<done>[0-9]+) of (?P<total>[0-9]+) batches\)"
_GROUPS = frozenset({"done", "total"})


@dataclass(frozen=True, slots=True)
class RunProgress:
    done: int
    total: int

    def __post_init__(self) -> None:
        if not 0 <= self.done <= self.total or self.total < 1:
            raise ValueError(f"{self.done} of {self.total} is no progress")

    @property
    def percent(self) -> int:
        return 100 * self.done // self.total

    @property
    def tenth(self) -> int:
        """Which tenth of the run it has reached (0 to 10)."""
        return 10 * self.done // self.total

    def __str__(self) -> str:
        return f"{self.done}/{self.total} ({self.percent}%)"


def pattern_problem(text: str) -> str | None:
    """Why ``text`` cannot serve as a progress pattern, if it cannot (for the config)."""
    try:
        compiled = re.compile(text)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    missing = _GROUPS - set(compiled.groupindex)
    if missing:
        return "it needs the named groups (?P<done>...) and (?P<total>...)"
    return None


def read_progress(tail: str, pattern: re.Pattern[str]) -> RunProgress | None:
    """The last progress line of ``tail``; none if it has none that makes sense (a total
    of zero, more done than in all, digits beyond any run)."""
    for match in reversed(list(pattern.finditer(tail))):
        done, total = match.group("done"), match.group("total")
        if not all(n is not None and n.isascii() and n.isdigit() and len(n) <= 9
                   for n in (done, total)):  # fmt: skip
            continue  # an optional group that did not match, other digits, or too many
        if int(done) <= int(total) and int(total) > 0:
            return RunProgress(int(done), int(total))
    return None


def worth_recording(recorded: RunProgress | None, seen: RunProgress) -> bool:
    """Whether ``seen`` goes into the history: it reached another tenth of the run than
    the progress ``recorded`` last (or the run's size changed, e.g. the next beam)."""
    return recorded is None or (recorded.tenth, recorded.total) != (seen.tenth, seen.total)
