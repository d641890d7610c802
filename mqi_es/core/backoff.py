"""Capped exponential backoff: when something that keeps failing may be tried again.

A failure that repeats (a node that keeps refusing, a full disk here, a bug hit every
cycle) must not be retried in a storm: ``Backoff`` spaces the retries of each key out, on
a monotonic clock the caller reads. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass


def delay(failures: int, *, base: float, cap: float) -> float:
    """The one backoff formula: ``base * 2**(failures-1)``, at most ``cap``; no wait
    before the first failure. Every retry in the program is spaced by it."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, 64))


@dataclass(slots=True)
class _Failing:
    failures: int
    retry_at: float


class Backoff:
    """When each key may be tried again: ``base * 2**(n-1)`` after n failures, at most ``cap``.

    Times are monotonic seconds given by the caller, so a wall-clock jump cannot stop or
    hasten a retry.
    """

    def __init__(self, *, base: float, cap: float) -> None:
        if not 0 < base <= cap:
            raise ValueError(f"need 0 < base <= cap, not base={base}, cap={cap}")
        self.base, self.cap = base, cap
        self._failing: dict[Hashable, _Failing] = {}

    def ready(self, key: Hashable, now: float) -> bool:
        failing = self._failing.get(key)
        return failing is None or now >= failing.retry_at

    def wait_left(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may be tried again (0: now)."""
        failing = self._failing.get(key)
        return 0.0 if failing is None else max(0.0, failing.retry_at - now)

    def failed(self, key: Hashable, now: float) -> float:
        """Count a failure of ``key``; returns the seconds until it may be tried again."""
        failing = self._failing.get(key)
        failures = failing.failures + 1 if failing else 1
        wait = delay(failures, base=self.base, cap=self.cap)
        self._failing[key] = _Failing(failures, now + wait)
        return wait

    def succeeded(self, key: Hashable) -> None:
        self._failing.pop(key, None)

    def retain(self, keep: Callable[[Hashable], bool]) -> None:
        """Forget the keys ``keep`` refuses (e.g. those of cases that have ended)."""
        self._failing = {key: f for key, f in self._failing.items() if keep(key)}
