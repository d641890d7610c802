"""Capped exponential backoff and quiet repeats, for the daemon's shell.

A failure that repeats (a node that keeps refusing, a full disk here, a bug hit every
cycle) must neither be retried in a storm nor fill the log: ``Backoff`` spaces the retries
of one key out (on the monotonic clock), and ``Repeats`` logs a failure once, with its
traceback, then only a count, and says when it ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass


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

    def failed(self, key: Hashable, now: float) -> float:
        """Count a failure of ``key``; returns the seconds until it may be tried again."""
        failing = self._failing.get(key)
        failures = failing.failures + 1 if failing else 1
        delay = min(self.cap, self.base * 2 ** min(failures - 1, 64))
        self._failing[key] = _Failing(failures, now + delay)
        return delay

    def succeeded(self, key: Hashable) -> None:
        self._failing.pop(key, None)

    def retain(self, keep: Callable[[Hashable], bool]) -> None:
        """Forget the keys ``keep`` refuses (e.g. those of cases that have ended)."""
        self._failing = {key: f for key, f in self._failing.items() if keep(key)}


@dataclass(slots=True)
class _Repeat:
    message: str
    count: int


class Repeats:
    """Logs each distinct failure of a key once; repeats are counted, not printed.

    A repeat is logged again (as a count) at 10, 100, 1000, ... occurrences, so a failure
    that never ends still shows it is alive; ``ended`` logs how often it happened.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._repeats: dict[Hashable, _Repeat] = {}

    def failed(
        self,
        key: Hashable,
        message: str,
        *args: object,
        level: int = logging.WARNING,
        exc_info: BaseException | None = None,
    ) -> None:
        text = message % args if args else message
        repeat = self._repeats.get(key)
        if repeat is None or repeat.message != text:
            self._repeats[key] = _Repeat(text, 1)
            self._log.log(level, "%s", text, exc_info=exc_info)
            return
        repeat.count += 1
        if _is_power_of_ten(repeat.count):
            self._log.log(level, "%s (repeated %d times)", text, repeat.count)

    def ended(self, key: Hashable, message: str = "") -> None:
        repeat = self._repeats.pop(key, None)
        if repeat is not None and repeat.count > 1:
            self._log.info(
                "%s after %d failures (last: %s)", message or "recovered", repeat.count,
                repeat.message,
            )  # fmt: skip

    def retain(self, keep: Callable[[Hashable], bool]) -> None:
        """Forget the keys ``keep`` refuses, without a word (their subject is gone)."""
        self._repeats = {key: r for key, r in self._repeats.items() if keep(key)}


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
