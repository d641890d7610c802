"""PostgreSQL event store beside SQLite, and the standby's takeover, in one run.

    .venv/bin/python benchmarks/bench_postgres.py [--events N] [--rounds R]
        [--takeover-seconds T] [--keep DIR]

1. Appends through each store's recorder, on a throw-away PostgreSQL 15 cluster (fsync on,
   as in production) and a fresh SQLite file: single-event saves (2,000), then the whole
   log (default 1,000,000 real events of bench_store's history) in saves of 1,000; for
   PostgreSQL also through the fence a leader's saves go through (its cost).
2. ``mqi replay`` of that log from each store, as a process: events/s; then how far a
   standby's views are behind the log: a save, its notification, the views caught up.
3. Takeover: two real daemons on a sandbox node; the leader dies the moment it records
   that a case's run succeeded (a failpoint: ``os._exit``, as SIGKILL), and the time to the
   new leader's first action on that case (the download of its results starts), median
   and max of R rounds at the default ``ha.takeover_seconds`` (15), with the moment the
   lease was won. (A case cut short while being *submitted* waits on purpose after a
   takeover, as after any restart: ``submit_settle``, so that a submission still in
   flight is found by its label first; that wait is the policy's, not the takeover's.)

The log is bench_store's cached one (built once under DIR, default /tmp/mqi-bench).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_store import prepared_cache
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import Environment

from mqi_es.adapters.eventstore import stores
from mqi_es.adapters.eventstore.lease import PostgresLease
from mqi_es.adapters.eventstore.log import LEDGER_NAME, LogRow
from mqi_es.adapters.eventstore.postgres import (
    FencedRecorder,
    LogFollower,
    postgres_event_store_env,
    prepare,
)
from mqi_es.adapters.eventstore.sqlite import SqliteLogRows, sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.config.schema import SqliteDatabase
from mqi_es.sandbox import ThreadedSandboxNode
from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from projections.live import LiveViews
from tests.e2e.daemon_harness import MQI, DaemonProcess, mqi_json, wait_for
from tests.fixtures.postgres import PostgresServer

SINGLE = 2_000
BATCH = 1_000


def rows_of(log: Path, limit: int) -> list[LogRow]:
    reader = SqliteLogRows(log)
    try:
        rows, position = [], 0
        while len(rows) < limit and (batch := reader.after(position, 50_000)):
            rows += batch
            position = batch[-1][0]
        return rows[:limit]
    finally:
        reader.close()


def stored(rows: Sequence[LogRow]) -> list[StoredEvent]:
    return [StoredEvent(UUID(o), v, t, s) for _, o, v, t, s in rows]


def sqlite_recorder(path: Path):
    from eventsourcing.sqlite import SQLiteFactory

    return SQLiteFactory(Environment(LEDGER_NAME, sqlite_event_store_env(path)))


def postgres_recorder(database):
    from eventsourcing.postgres import PostgresFactory

    return PostgresFactory(Environment(LEDGER_NAME, postgres_event_store_env(database)))


def rate(work: Callable[[], object], items: int) -> float:
    started = time.perf_counter()
    work()
    return items / (time.perf_counter() - started)


def appends(events: list[StoredEvent], make, *, batch: int) -> float:
    factory = make()
    recorder = factory.application_recorder()
    try:
        return rate(
            lambda: [recorder.insert_events(events[i : i + batch])
                     for i in range(0, len(events), batch)],
            len(events),
        )  # fmt: skip
    finally:
        factory.close()


def replay_rate(config: Path, events: int) -> float:
    started = time.perf_counter()
    done = subprocess.run([MQI, "--config", str(config), "replay"], capture_output=True,
                          text=True, timeout=3600)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"replay failed: {done.stderr}")
    return events / seconds


def bench_store(log: Path, events: int, scratch: Path) -> None:
    server = PostgresServer(fsync=True)
    server.start()
    try:
        rows = rows_of(log, events)
        all_events = stored(rows)
        singles = all_events[:SINGLE]
        print(f"appends ({len(all_events):,} real events; PostgreSQL 15 with fsync on):")
        results: dict[str, float] = {}
        for name, batch in (("single", 1), ("batched", BATCH)):
            sub = singles if batch == 1 else all_events
            path = scratch / f"{name}.sqlite"
            results[f"sqlite {name}"] = appends(sub, lambda p=path: sqlite_recorder(p), batch=batch)
            database = server.create_database(f"bench_{name}")
            prepare(database)
            results[f"postgres {name}"] = appends(
                sub, lambda d=database: postgres_recorder(d), batch=batch
            )
        fenced = server.create_database("bench_fenced")
        prepare(fenced)
        PostgresLease(fenced, member="bench", name="bench", ttl=3600).campaign()
        FencedRecorder.term = 1  # every save checks the lease's term, as a leader's
        try:
            results["postgres single, fenced"] = appends(
                singles, lambda: postgres_recorder(fenced), batch=1
            )
            results["postgres batched, fenced"] = appends(
                all_events[SINGLE : SINGLE + 100 * BATCH],
                lambda: postgres_recorder(fenced),
                batch=BATCH,
            )
        finally:
            FencedRecorder.term = None
        for name, value in results.items():
            print(f"  {name:<28} {value:>10,.0f} events/s")
        r = results
        print(
            f"  PostgreSQL / SQLite: single x{r['postgres single'] / r['sqlite single']:.2f}, "
            f"batched x{r['postgres batched'] / r['sqlite batched']:.2f}; fenced / unfenced: "
            f"single x{r['postgres single, fenced'] / r['postgres single']:.2f}, "
            f"batched x{r['postgres batched, fenced'] / r['postgres batched']:.2f}"
        )

        print(f"replay of {len(rows):,} events (`mqi replay`, a process):")
        sqlite_site = scratch / "sqlite-site" / "mqi.yaml"
        sqlite_site.parent.mkdir()
        sqlite_site.write_text(f"database:\n  path: {scratch / 'batched.sqlite'}\n")
        pg = server.config("bench_batched")
        pg_site = scratch / "pg-site" / "mqi.yaml"
        pg_site.parent.mkdir()
        pg_site.write_text(
            "database:\n  store: postgres\n"
            f"  dsn: {{host: 127.0.0.1, port: {pg.dsn.port}, dbname: bench_batched, "
            f"user: {pg.dsn.user}}}\n  password_file: {pg.password_file}\n"
        )
        assert stores.inspect(SqliteDatabase(path=scratch / "batched.sqlite")).head == len(rows)
        lite, post = replay_rate(sqlite_site, len(rows)), replay_rate(pg_site, len(rows))
        print(f"  sqlite   {lite:>10,.0f} events/s ({len(rows) / lite:.1f} s)")
        print(f"  postgres {post:>10,.0f} events/s ({len(rows) / post:.1f} s); "
              f"PostgreSQL / SQLite x{post / lite:.2f}")  # fmt: skip
    finally:
        server.destroy()


def bench_follow(scratch: Path, saves: int = 200) -> None:
    """How far behind a standby's views are: from a leader's save to the standby's views
    holding it (woken by LISTEN/NOTIFY, then caught up), against polling once a second."""
    server = PostgresServer(fsync=True)
    server.start()
    try:
        database = server.create_database("follow")
        prepare(database)
        writer = Ledger(postgres_event_store_env(database))
        writer.start_log()
        reader = Ledger(postgres_event_store_env(database))
        views = LiveViews(reader, scratch / "follow-views.sqlite")
        follower = LogFollower(reader.recorder)
        lags: list[float] = []
        try:
            for n in range(saves):
                follower.wait(0)  # nothing pending
                started = time.perf_counter()
                writer.register_host(f"n{n}", "10.0.0.1", actor="daemon")
                follower.wait(5)
                views.catch_up()
                lags.append(time.perf_counter() - started)
        finally:
            follower.close()
            views.close()
        lags.sort()
        print(f"a standby's views behind the log ({saves} saves, LISTEN/NOTIFY then catch-up): "
              f"median {statistics.median(lags) * 1000:.1f} ms, p95 "
              f"{lags[int(0.95 * len(lags))] * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms; "
              "polling once a second would average 500 ms")  # fmt: skip
    finally:
        server.destroy()


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def stamp(log: str, needle: str) -> datetime:
    """The time of the first line of ``log`` holding ``needle``."""
    for line in log.splitlines():
        if needle in line and (found := _STAMP.match(line)):
            return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
    raise LookupError(needle)


def bench_takeover(scratch: Path, rounds: int, takeover: float) -> None:
    server = PostgresServer()
    server.start()
    node = ThreadedSandboxNode(scratch / "node")
    node.start()
    try:
        database = server.create_database("takeover")
        prepare(database)
        dsn = database.dsn
        incoming = scratch / "share" / "incoming"
        incoming.mkdir(parents=True)

        def site(name: str) -> Path:
            return write_config(
                scratch / name, node,
                database={"store": "postgres", "password_file": str(database.password_file),
                          "dsn": {"host": dsn.host, "port": dsn.port, "dbname": dsn.dbname,
                                  "user": dsn.user}},
                scanner={"watch_path": str(incoming)},
                results={"local_path": str(scratch / "share" / "results")},
                ha={"takeover_seconds": takeover, "name": name},
            )  # fmt: skip

        a, b = site("a"), site("b")
        times: list[float] = []
        leases: list[float] = []
        for n in range(rounds):
            leader = DaemonProcess(a, failpoint="after:RecordRemoteSuccess")
            wait_for(lambda: (mqi_json(a, "status")["leadership"]["leader"] or {}).get("name")
                     == "a", timeout=60, daemon=leader)  # fmt: skip
            standby = DaemonProcess(b)
            wait_for(lambda: mqi_json(a, "status")["leadership"]["standbys"], timeout=60,
                     daemon=standby)  # fmt: skip
            name = f"round-{n}"
            drop_case(incoming, name, "sleep 0\n" + SUCCEEDS)
            leader.wait(timeout=120)  # it dies as it records the run's success
            acting = f"case {name}: download 0/"
            wait_for(lambda s=standby, a=acting: a in s.output(), timeout=120, daemon=standby)
            died = stamp(leader.output(), f"case {name}: RecordRemoteSuccess")
            won = stamp(standby.output(), "leading the log at term")
            acted = stamp(standby.output(), acting)
            times.append((acted - died).total_seconds())
            leases.append((won - died).total_seconds())
            print(f"  round {n + 1:>2}: lease won after {leases[-1]:.2f} s, first action "
                  f"after {times[-1]:.2f} s", flush=True)  # fmt: skip
            leader.stop()
            standby.stop()
        print(f"takeover (ha.takeover_seconds {takeover:g}): leader killed -> the new leader's "
              f"first action, median {statistics.median(times):.2f} s, max {max(times):.2f} s "
              f"over {len(times)} rounds; the lease won after median "
              f"{statistics.median(leases):.2f} s, max {max(leases):.2f} s (it lasts "
              f"{0.6 * takeover:.1f} s)")  # fmt: skip
    finally:
        node.stop()
        server.destroy()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--takeover-seconds", type=float, default=15.0)
    parser.add_argument("--keep", type=Path, default=Path("/tmp/mqi-bench"))
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument("--skip-takeover", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mqi-bench-pg-") as root:
        scratch = Path(root)
        if not args.skip_store:
            cache, _ = prepared_cache(args.keep, args.events)
            bench_store(cache.log, args.events, scratch)
        bench_follow(scratch)
        if not args.skip_takeover:
            bench_takeover(scratch, args.rounds, args.takeover_seconds)


if __name__ == "__main__":
    main()
