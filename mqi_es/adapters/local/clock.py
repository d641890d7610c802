"""The wall clock: UTC time to date facts with (local waits use ``time.monotonic``)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
