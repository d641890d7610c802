"""CPU time of one reconcile cycle: read the views, decide, for 10, 100 and 1,000 active
cases, with no finished case in the history and with 100,000.

    .venv/bin/python benchmarks/bench_reconcile.py [--keep DIR]

A cycle here is what the daemon does between its status queries and its actions: read the
active cases, slots and hosts from the views, build the world, call ``reconcile``. Target:
under 20 ms at 1,000 active cases, and flat in the size of the history.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _history import build_log

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.actions import Memory
from mqi_es.core.cycle import World
from mqi_es.core.policy import HostPolicy, Policy
from mqi_es.core.reconcile import reconcile
from mqi_es.core.remote import RemoteSlot, RemoteTask, Seen, StatusSnapshot
from mqi_es.domain import Case, Host, Slot
from projections import runner
from projections.feed import EventFeed
from projections.reader import ViewReader
from projections.schema import is_current

HOSTS = 8
GROUPS_PER_HOST = 125  # 1,000 GPU slots: every active case runs on its own
T0 = datetime(2026, 6, 1, tzinfo=UTC)
CYCLES = 30


def add_active(ledger: Ledger, count: int) -> None:
    """``count`` running cases, one per slot."""
    batch = []
    for h in range(HOSTS):
        host = Host(name=f"bench{h}", address="127.0.0.1", actor="daemon")
        host.record_reachable(at=T0, actor="daemon")
        batch.append(host)
    for i in range(count):
        host, group = f"bench{i % HOSTS}", f"g{i // HOSTS}"
        slot = Slot(host=host, name=group, actor="daemon")
        case = Case(
            case_id=f"active-{i:05d}", file_count=3, total_bytes=9, fingerprint="f", actor="daemon"
        )
        case.start_submission(host=host, slot=group, remote_base_dir="~/mqi", actor="daemon")
        slot.allocate(case_id=case.case_id, attempt=1, actor="daemon")
        case.record_enqueued(attempt=1, task_id=i, created_at=T0, actor="daemon")
        case.record_started(attempt=1, started_at=T0, actor="daemon")
        batch += [slot, case]
    ledger.save(*batch)


def measure(root: Path, history_events: int, active: int) -> list[float]:
    events = root / f"events-{history_events}-{active}.sqlite"
    link = root / f"views-{history_events}-{active}.sqlite"
    fresh = not events.exists() or not link.exists()
    if fresh:
        events.unlink(missing_ok=True)
        if history_events:
            build_log(events, history_events)
    ledger = Ledger(sqlite_event_store_env(events))
    if fresh:
        add_active(ledger, active)
    if fresh or not is_current(link):  # views kept from another release are rebuilt
        runner.replay(link, EventFeed(ledger))
    reader = ViewReader(link, application_name=ledger.name)
    running: dict[str, list[RemoteTask]] = {}
    with reader.snapshot() as views:  # each host's queue runs the active cases' tasks
        for case in views.cases(active_only=True):
            running.setdefault(case.host, []).append(
                RemoteTask(
                    id=case.task_id,
                    label=case.label,
                    slot=case.slot,
                    state="running",
                    result=None,
                    exit_code=None,
                    created_at=T0,
                    start=T0,
                    end=None,
                )
            )
    groups = {f"g{j}": RemoteSlot(open=True) for j in range(GROUPS_PER_HOST)}
    observations = {
        f"bench{h}": Seen(
            StatusSnapshot({t.id: t for t in running.get(f"bench{h}", [])}, groups),
            taken_at=300.0,  # monotonic seconds, five minutes into the daemon's life
            node_time=T0 + timedelta(minutes=5),
            skew=0.0,
        )
        for h in range(HOSTS)
    }
    policy = Policy(
        hosts=tuple(HostPolicy(f"bench{h}", tuple(groups), "~/mqi") for h in range(HOSTS))
    )
    timings = []
    for _ in range(CYCLES):
        started = time.process_time()
        with reader.snapshot() as views:
            cases = views.cases(active_only=True)
            slots = [s for s in views.slots() if s.host in policy.hosts_by_name]
            hosts = views.hosts()
        world = World(
            cases=cases,
            slots=slots,
            hosts=hosts,
            observations=observations,
            started_at=-3600.0,
            mono=300.0,
        )
        decision = reconcile(world, T0 + timedelta(minutes=5), policy, Memory())
        timings.append((time.process_time() - started) * 1000)
        assert not decision.records, decision.records[:3]  # a steady state: nothing to do
    ledger.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=Path("/tmp/mqi-bench-reconcile"))
    args = parser.parse_args()
    args.keep.mkdir(parents=True, exist_ok=True)
    print(f"one cycle's CPU time (views read + reconcile), median and max of {CYCLES} cycles")
    print(f"{'active cases':>12} {'history':>10} {'median ms':>10} {'max ms':>8}")
    results = {}
    for history in (0, 900_000):
        for active in (10, 100, 1_000):
            timings = measure(args.keep, history, active)
            results[history, active] = statistics.median(timings)
            label = "none" if not history else f"{history // 9:,} cases"
            print(
                f"{active:>12,} {label:>10} {statistics.median(timings):>10.2f} "
                f"{max(timings):>8.2f}"
            )
    at_scale = results[900_000, 1_000]
    print(
        f"target: < 20 ms at 1,000 active cases: {at_scale:.2f} ms "
        f"({'met' if at_scale < 20 else 'MISSED'})"
    )
    print(f"history 100k vs none, 1,000 active: {at_scale / results[0, 1_000]:.2f}x (flat = 1.0)")


if __name__ == "__main__":
    main()
