"""What the daemon counts about itself, for `/metrics` (``cli.web.metrics``).

Counters and histograms kept in plain Python in the daemon, written with the live file
(``progress.ProgressBoard``) so that `mqi web`, in this process or in another, serves them
in the Prometheus text format. Like the live file they are a window on the daemon's memory:
they start at zero with each daemon (Prometheus reads that as a counter reset), and the
facts themselves are in the log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

CYCLE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Histogram:
    """Observations counted per bucket (upper bounds, ``le``), their sum and number."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, the last one is +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), -1)
        self.counts[index] += 1
        self.total += value

    def as_data(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.total}


class DaemonMetrics:
    """Counted as the daemon works: facts recorded by kind, attempts by outcome, cycle
    durations, status queries per host (their latency, and why a host was not seen), and
    the bytes sent to and fetched from the nodes."""

    def __init__(self) -> None:
        self.recorded: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.cycles = Histogram(CYCLE_BUCKETS)
        self.polls: dict[str, Histogram] = {}
        self.poll_failures: Counter[tuple[str, str]] = Counter()
        self.transferred: Counter[str] = Counter()

    def record(self, kind: str, outcome: str | None = None) -> None:
        """A fact of ``kind`` was recorded; ``outcome``: how an attempt ended, if it did."""
        self.recorded[kind] += 1
        if outcome is not None:
            self.attempts[outcome] += 1

    def cycle(self, seconds: float) -> None:
        self.cycles.observe(seconds)

    def poll(self, host: str, seconds: float, unseen: str | None) -> None:
        """A status query of ``host`` answered in ``seconds``; ``unseen``: why the host was
        not seen by it (unreachable, queue_down, ...), if it was not."""
        self.polls.setdefault(host, Histogram(POLL_BUCKETS)).observe(seconds)
        if unseen is not None:
            self.poll_failures[(host, unseen)] += 1

    def transfer(self, direction: str, count: int) -> None:
        """``count`` bytes went ``direction`` ("upload" or "download")."""
        self.transferred[direction] += count

    def as_data(self) -> dict[str, Any]:
        return {
            "recorded": dict(self.recorded),
            "attempts": dict(self.attempts),
            "cycles": self.cycles.as_data(),
            "polls": {host: h.as_data() for host, h in self.polls.items()},
            "poll_failures": [[h, why, n] for (h, why), n in self.poll_failures.items()],
            "transferred": dict(self.transferred),
        }
