"""Timestamps written the way pueue's chrono prints ``DateTime<Local>``.

RFC 3339 with ``SecondsFormat::AutoSi``: no fraction when the nanoseconds are zero, else
3, 6 or 9 digits, whichever is the shortest exact form; the local UTC offset, written ``Z``
when it is zero (chrono >= 0.4.27, i.e. pueue >= 3.3). Times are kept as integer
nanoseconds since the epoch so that the 9-digit precision of Linux clocks survives a restart.
"""

from __future__ import annotations

import time


def now_ns() -> int:
    return time.time_ns()


def rfc3339(epoch_ns: int) -> str:
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    local = time.localtime(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + _fraction(nanos) + _offset(local.tm_gmtoff)


def _fraction(nanos: int) -> str:
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


def _offset(seconds_east: int) -> str:
    if seconds_east == 0:
        return "Z"
    sign = "+" if seconds_east > 0 else "-"
    hours, rest = divmod(abs(seconds_east), 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}"
    return f"{text}:{seconds:02d}" if seconds else text
