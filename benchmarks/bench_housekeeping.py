"""The daemon's per-cycle poll cost after 10 and after 10,000 completed cases, with
housekeeping on (our finished tasks removed from pueue) and off.

    .venv/bin/python benchmarks/bench_housekeeping.py [--cases 10000] [--cycles 30]

For each size, a log holding that many completed cases and the sandbox node's pueue
stand-in holding each case's ended task (its state written before it starts, as a node
that ran them would have it); then a real daemon (``build_daemon``: PueueHost over the
sandbox's SSH server, the views, the reconciler) runs cycles. With housekeeping on, the
first cycles remove the finished tasks (one ``pueue remove`` per 500); then ``--cycles``
cycles are measured, the two sizes' cycles interleaved. Per cycle: bytes received from
the node, the daemon thread's CPU time (SSH, parsing, the views, reconcile, recording)
and, apart, the CPU of parsing one status answer. Target: with housekeeping on, 10,000
cases cost what 10 do, within 10%; without it the cost grows with the history.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.adapters.pueue.model import to_snapshot
from mqi_es.adapters.pueue.parse import parse_status_reading
from mqi_es.app.ledger import Ledger
from mqi_es.bootstrap import build_daemon
from mqi_es.config.loader import load_config
from mqi_es.core.ids import task_label
from mqi_es.core.outcome import Ok
from mqi_es.domain import Case
from mqi_es.runtime import Daemon
from mqi_es.sandbox import ThreadedSandboxNode
from mqi_es.sandbox.layout import NodeLayout
from mqi_es.sandbox.site import write_config
from mqi_es.sandbox.state import Group, PueueState, Task, TaskResult
from projections.live import LiveViews

SAVE_BATCH = 500
WARM_UP_LIMIT = 60  # cycles at most before the queue must be clean


@dataclass(frozen=True)
class Cost:
    cases: int
    housekeeping: bool
    tasks_left: int
    bytes_per_cycle: float
    cpu_ms_per_cycle: float
    parse_ms: float


def seed_node(root: Path, cases: int, at: datetime) -> None:
    """The pueue state of a node that ran ``cases`` cases, one ended task each."""
    layout = NodeLayout(root)
    layout.create()
    ns = int(at.timestamp() * 1e9)
    tasks = [
        Task(
            id=i,
            created_at=ns,
            command="sh ./run.sh 1",
            path=str(layout.home),
            envs={},
            group=f"gpu{i % 2}",
            label=task_label(f"case-{i:05d}", 1),
            enqueued_at=ns,
            phase="Done",
            start=ns,
            end=ns + 60 * 10**9,
            result=TaskResult("Success"),
        )
        for i in range(cases)
    ]
    groups = {"default": Group(), "gpu0": Group(), "gpu1": Group()}
    state = PueueState(tasks={t.id: t for t in tasks}, groups=groups)
    state.save(layout.pueue.state)


def seed_log(ledger: Ledger, cases: int, at: datetime) -> None:
    """``cases`` completed cases, saved in batches (as the Ledger would record them)."""
    batch: list[Case] = []
    for i in range(cases):
        case = Case(case_id=f"case-{i:05d}", file_count=4, total_bytes=4096, fingerprint="f",
                    actor="daemon")  # fmt: skip
        case.start_submission(host="sandbox", slot=f"gpu{i % 2}", remote_base_dir="~/mqi_cases",
                              actor="daemon")  # fmt: skip
        case.record_upload(attempt=1, files=4, bytes=4096, seconds=0.1, digests=[],
                           manifest_sha256="m", actor="daemon")  # fmt: skip
        case.record_enqueued(attempt=1, task_id=i, created_at=at, actor="daemon")
        case.record_remote_success(attempt=1, ended_at=at, actor="daemon")
        case.complete(attempt=1, files=2, bytes=248, results_dir=f"/r/{i}", digests=[],
                      manifest_sha256="m", actor="daemon")  # fmt: skip
        batch.append(case)
        if len(batch) == SAVE_BATCH:
            ledger.save(*batch)
            batch = []
    if batch:
        ledger.save(*batch)


class Meter:
    """Counts what the node answers the daemon's connection."""

    def __init__(self, daemon: Daemon) -> None:
        self.bytes = 0
        self.last_status = ""
        connection = daemon.hosts["sandbox"].connection  # type: ignore[attr-defined]
        run = connection.run

        async def counted(command: str, *args: object, **kwargs: object) -> object:
            outcome = await run(command, *args, **kwargs)
            if isinstance(outcome, Ok):
                self.bytes += len(outcome.stdout.encode())
                if "status" in command:
                    self.last_status = outcome.stdout
            return outcome

        connection.run = counted


class Site:
    """A node that ran ``cases`` cases and a daemon over a log of them, warmed up."""

    def __init__(self, root: Path, cases: int, housekeeping: bool) -> None:
        self.cases, self.housekeeping = cases, housekeeping
        at = datetime.now(UTC) - timedelta(hours=1)
        seed_node(root / "node", cases, at)
        self.node = ThreadedSandboxNode(root / "node").start()
        config_path = write_config(
            root / "site", self.node, housekeeping={"remove_finished_tasks": housekeeping},
            main_loop={"sleep_interval_seconds": 0.05},
        )  # fmt: skip
        config = load_config(config_path).config
        ledger = Ledger(sqlite_event_store_env(config.database.path))
        ledger.start_log()
        seed_log(ledger, cases, at)
        self.views = LiveViews(ledger, config.database.views_path)
        self.daemon = build_daemon(config, ledger, self.views)
        self.daemon.register_configuration()
        self.meter = Meter(self.daemon)
        self.spent: list[float] = []
        self.received: list[int] = []

    async def warm_up(self) -> None:
        """The first cycles clean up (housekeeping on): one more once nothing is in flight."""
        for _ in range(WARM_UP_LIMIT):
            await cycle(self.daemon)
            if not self.housekeeping or not self.daemon._inflight:
                await cycle(self.daemon)
                return

    async def measured_cycle(self) -> None:
        self.meter.bytes = 0
        started = time.thread_time()
        await cycle(self.daemon)
        self.spent.append(time.thread_time() - started)
        self.received.append(self.meter.bytes)

    def cost(self) -> Cost:
        status = self.meter.last_status
        tasks_left = len(to_snapshot(parse_status_reading(status).state).tasks)
        parse = min(timed_parse(status) for _ in range(5))
        return Cost(self.cases, self.housekeeping, tasks_left, statistics.median(self.received),
                    statistics.median(self.spent) * 1e3, parse * 1e3)  # fmt: skip

    async def close(self) -> None:
        for host in self.daemon.hosts.values():
            await host.close()
        self.views.close()
        self.node.stop()


async def compare(
    root: Path, sizes: tuple[int, int], housekeeping: bool, cycles: int
) -> list[Cost]:
    """Both sizes side by side, their cycles interleaved so that the machine's drift
    (other load, CPU frequency) falls on both alike."""
    sites = [Site(root / str(cases), cases, housekeeping) for cases in sizes]
    try:
        for site in sites:
            await site.warm_up()
        for _ in range(cycles):
            for site in sites:
                await site.measured_cycle()
        return [site.cost() for site in sites]
    finally:
        for site in sites:
            await site.close()


async def cycle(daemon: Daemon) -> None:
    await daemon.cycle()
    await asyncio.gather(*daemon._inflight.values(), return_exceptions=True)


def timed_parse(text: str) -> float:
    started = time.thread_time()
    to_snapshot(parse_status_reading(text).state)
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=30)
    args = parser.parse_args()
    results: list[Cost] = []
    for housekeeping in (True, False):
        with tempfile.TemporaryDirectory(prefix="mqi-bench-") as folder:
            costs = asyncio.run(compare(Path(folder), (10, args.cases), housekeeping, args.cycles))
        for r in costs:
            print(
                f"housekeeping {'on ' if housekeeping else 'off'} {r.cases:>6} completed cases: "
                f"{r.tasks_left:>6} tasks left in the queue, {r.bytes_per_cycle:>10,.0f} bytes "
                f"per cycle, {r.cpu_ms_per_cycle:7.2f} ms CPU per cycle, "
                f"parse {r.parse_ms:7.2f} ms",
                flush=True,
            )
        results.extend(costs)
    on_small, on_large, off_small, off_large = results
    print()
    for name, small, large in (("on ", on_small, on_large), ("off", off_small, off_large)):
        print(
            f"housekeeping {name}: {args.cases} / 10 cases: bytes x{ratio(large, small, 'b'):.3f}, "
            f"cycle CPU x{ratio(large, small, 'c'):.3f}, parse CPU x{ratio(large, small, 'p'):.3f}"
        )
    flat = all(abs(ratio(on_large, on_small, k) - 1) <= 0.10 for k in "bc")
    print(f"\nwith housekeeping the poll cost is flat within 10%: {'yes' if flat else 'NO'}")


def ratio(large: Cost, small: Cost, what: str) -> float:
    pick = {"b": "bytes_per_cycle", "c": "cpu_ms_per_cycle", "p": "parse_ms"}[what]
    return getattr(large, pick) / max(getattr(small, pick), 1e-9)


if __name__ == "__main__":
    main()
