"""Quiet repeats: a failure logged once (with its traceback), then only counted.

So a failure that never ends (a node that keeps refusing, a full disk) shows it is alive
without filling the log, and the line that says it ended names how often it happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass


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
