"""`/metrics` in the Prometheus text format: gauges read from the views at each scrape, and
the daemon's own counters and histograms as its live file holds them
(``mqi_es.adapters.local.metrics``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from cli.web.data import Dashboard
from mqi_es.core.states import AlarmState, CaseState


class MqiCollector:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def collect(self) -> Iterator[Metric]:
        context = self.dashboard.context
        with context.views().snapshot() as views:
            counts = views.case_counts()
            standing = views.alarms(standing_only=True)
            due = len(views.notifications(due_only=True))
        live = context.live()
        cases = GaugeMetricFamily("mqi_cases", "Cases per state.", labels=["state"])
        for state in CaseState:
            cases.add_metric([state.value], counts.get(state, 0))
        yield cases
        alarms = GaugeMetricFamily("mqi_open_alarms", "Alarms raised and not acknowledged.")
        alarms.add_metric([], sum(a.state is AlarmState.OPEN for a in standing))
        yield alarms
        yield GaugeMetricFamily("mqi_notifications_due", "Notifications not delivered yet.",
                                value=due)  # fmt: skip
        last = live.last_cycle_at.timestamp() if live.last_cycle_at else 0.0
        yield GaugeMetricFamily("mqi_last_cycle_timestamp_seconds",
                                "When the daemon's last cycle completed (0: none).",
                                value=last)  # fmt: skip
        yield from _daemon_metrics(live.metrics)


def _daemon_metrics(data: Mapping[str, Any]) -> Iterator[Metric]:
    transitions = CounterMetricFamily("mqi_transitions", "Facts recorded by the daemon, by kind.",
                                      labels=["kind"])  # fmt: skip
    for kind, count in sorted(data.get("recorded", {}).items()):
        transitions.add_metric([kind], count)
    yield transitions
    attempts = CounterMetricFamily("mqi_attempts", "Attempts ended, by outcome.",
                                   labels=["outcome"])  # fmt: skip
    for outcome, count in sorted(data.get("attempts", {}).items()):
        attempts.add_metric([outcome], count)
    yield attempts
    cycles = HistogramMetricFamily("mqi_cycle_duration_seconds", "Duration of a daemon cycle.")
    _histogram(cycles, [], data.get("cycles"))
    yield cycles
    polls = HistogramMetricFamily(
        "mqi_poll_duration_seconds", "Duration of a host's status query.", labels=["host"]
    )
    for host, histogram in sorted(data.get("polls", {}).items()):
        _histogram(polls, [host], histogram)
    yield polls
    failures = CounterMetricFamily("mqi_poll_failures",
                                   "Status queries after which a host was not seen, by why.",
                                   labels=["host", "why"])  # fmt: skip
    for host, why, count in data.get("poll_failures", []):
        failures.add_metric([host, why], count)
    yield failures
    moved = CounterMetricFamily("mqi_transferred_bytes", "Bytes uploaded to and downloaded from "
                                "the nodes.", labels=["direction"])  # fmt: skip
    for direction in ("upload", "download"):
        moved.add_metric([direction], data.get("transferred", {}).get(direction, 0))
    yield moved


def _histogram(family: HistogramMetricFamily, labels: list[str], data: Any) -> None:
    if not isinstance(data, dict):
        return
    cumulative, buckets = 0, []
    bounds = [*data["bounds"], float("inf")]
    for bound, count in zip(bounds, data["counts"], strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
    family.add_metric(labels, buckets, data["sum"])


def exposition(dashboard: Dashboard) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MqiCollector(dashboard))  # type: ignore[arg-type]
    return generate_latest(registry)
