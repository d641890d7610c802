"""What the daemon is doing right now, shared with `mqi status` through a small file.

The daemon rewrites ``var/live.json`` (atomically, owner-only, at most a few times a second)
with the transfers in flight, how far each running simulation got as last read (the
history records it only every tenth of a run), each host's clock skew as last measured
and when its last cycle completed; `mqi status`, `mqi cases`, `mqi watch` and `mqi web`
show them (and warn when that cycle is long past). It is a window on the daemon's memory,
not a record: nothing in it is an event, and a stale file after a crash is recognised by
its pid.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mqi_es.adapters.local.metrics import DaemonMetrics
from mqi_es.core.run_progress import RunProgress

_MIN_INTERVAL_SECONDS = 0.5
_TAIL_LINES, _TAIL_LINE_CHARS = 12, 240  # of a running case's output, kept for `mqi watch`


def live_file(data_dir: Path) -> Path:
    """Where the daemon whose local folder is ``data_dir`` shows what it is doing."""
    return data_dir / "live.json"


@dataclass(frozen=True, slots=True)
class Transfer:
    case_id: str
    direction: str  # "upload" or "download"
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class Live:
    transfers: list[Transfer] = field(default_factory=list)
    skews: dict[str, float | None] = field(default_factory=dict)  # host -> seconds (node - us)
    runs: dict[str, RunProgress] = field(default_factory=dict)  # case id -> as last read
    tails: dict[str, str] = field(default_factory=dict)  # case id -> its output's last lines
    last_cycle_at: datetime | None = None  # UTC: when the daemon's last cycle completed
    metrics: dict[str, Any] = field(default_factory=dict)  # DaemonMetrics.as_data()


class ProgressBoard:
    def __init__(self, path: Path, metrics: DaemonMetrics | None = None) -> None:
        self.path = path
        self.metrics = metrics or DaemonMetrics()
        self._transfers: dict[str, Transfer] = {}
        self._skews: dict[str, float | None] = {}
        self._runs: dict[str, RunProgress] = {}
        self._tails: dict[str, str] = {}
        self._last_cycle_at: datetime | None = None
        self._written_at = 0.0

    def update(self, transfer: Transfer) -> None:
        self._transfers[transfer.case_id] = transfer
        if time.monotonic() - self._written_at >= _MIN_INTERVAL_SECONDS:
            self._write()

    def finish(self, case_id: str) -> None:
        if self._transfers.pop(case_id, None) is not None:
            self._write()

    def clocks(self, skews: dict[str, float | None]) -> None:
        """The skew measured this cycle of each host seen (kept for hosts not seen), to a
        tenth of a second: the file is rewritten only when one of them moved that much."""
        shown = {name: None if s is None else round(s, 1) for name, s in skews.items()}
        changed = {name: s for name, s in shown.items() if self._skews.get(name, 0.0) != s}
        if changed:
            self._skews.update(changed)
            self._write()

    def runs(self, latest: Mapping[str, RunProgress], tails: Mapping[str, str]) -> None:
        """How far these running cases got, and the last lines of their output, as just
        read (`mqi watch` shows a case's)."""
        shown = {c: _last_lines(t) for c, t in tails.items()}
        changed = {c: p for c, p in latest.items() if self._runs.get(c) != p}
        moved = {c: t for c, t in shown.items() if self._tails.get(c) != t}
        if changed or moved:
            self._runs.update(changed)
            self._tails.update(moved)
            self._write()

    def keep_runs(self, running: Iterable[str]) -> None:
        """Forget the progress and output of the cases no longer running."""
        still = set(running)
        if set(self._runs) - still or set(self._tails) - still:
            self._runs = {c: p for c, p in self._runs.items() if c in still}
            self._tails = {c: t for c, t in self._tails.items() if c in still}
            self._write()

    def cycled(self, at: datetime) -> None:
        """A cycle completed at ``at`` (UTC)."""
        self._last_cycle_at = at
        self._write()

    def _write(self) -> None:
        self._written_at = time.monotonic()
        data = {
            "pid": os.getpid(),
            "transfers": [asdict(t) for t in self._transfers.values()],
            "skews": self._skews,
            "runs": {c: [p.done, p.total] for c, p in self._runs.items()},
            "tails": self._tails,
            "last_cycle_at": self._last_cycle_at and self._last_cycle_at.isoformat(),
            "metrics": self.metrics.as_data(),
        }
        staging = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        staging.replace(self.path)


def read_live(path: Path, daemon_pid: int | None) -> Live:
    """What the running daemon (``daemon_pid``) is doing now; nothing if none runs."""
    if daemon_pid is None:
        return Live()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Live()
    if not isinstance(data, dict) or data.get("pid") != daemon_pid:
        return Live()  # left behind by a daemon that is gone
    return Live(
        transfers=[Transfer(**t) for t in data.get("transfers", [])],
        skews=dict(data.get("skews", {})),
        runs=_runs(data.get("runs")),
        tails={str(c): t for c, t in tails.items() if isinstance(t, str)}
        if isinstance(tails := data.get("tails"), dict)
        else {},
        last_cycle_at=_when(data.get("last_cycle_at")),
        metrics=metrics if isinstance(metrics := data.get("metrics"), dict) else {},
    )


def _when(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _runs(data: object) -> dict[str, RunProgress]:
    try:
        return {str(c): RunProgress(int(d), int(t)) for c, (d, t) in data.items()}  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return {}  # not what this release writes: shown as unknown


def _last_lines(text: str) -> str:
    return "\n".join(line[:_TAIL_LINE_CHARS] for line in text.splitlines()[-_TAIL_LINES:])
