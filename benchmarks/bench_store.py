"""Event store and projections benchmark: appends, codec, replay and ``mqi status``.

    .venv/bin/python benchmarks/bench_store.py [--events N] [--keep DIR] [--profile]

1. Appends on a fresh SQLite file: single-event commands against batches of ~1,000.
2. The msgspec codec against eventsourcing's default JSON transcoder, on logged events.
3. ``mqi replay`` of the whole log (default 1,000,000 events) in a subprocess, with its
   peak RSS; then reading + decoding alone, ours against eventsourcing's own path
   (``select_notifications`` + the default mapper) on a JSON copy of the same log.
4. ``mqi status`` and ``mqi status --json`` as processes, with up-to-date views, against
   the interpreter's own start-up and the in-process queries.

Targets: replay >= 150,000 events/s, 1M events in < 7 s, peak RSS < 200 MB; status
< 150 ms. The log (and its JSON copy) is built once under DIR (default /tmp/mqi-bench)
and reused while the code that shapes it (this folder's _history.py, the domain, the
codec) is unchanged. ``--profile`` adds cProfile tables of ``mqi replay`` and
``mqi status`` and the slowest imports of ``mqi status``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import pstats
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from _history import ACTOR, Installation, build_log, event_count
from eventsourcing.application import Application
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)

from mqi_es.adapters.eventstore.log import LEDGER_NAME
from mqi_es.adapters.eventstore.recorder_rows import RecorderRows
from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from projections.feed import EventFeed
from projections.reader import ViewReader
from projections.runner import REPLAY_BATCH

ROOT = Path(__file__).resolve().parents[1]
MQI = Path(sys.executable).with_name("mqi")
# The sources that decide the bytes of a built log: a change to any rebuilds the cache.
LOG_SHAPERS = [
    Path(__file__).with_name("_history.py"),
    ROOT / "mqi_es/adapters/eventstore/codec.py",
    ROOT / "mqi_es/core/ids.py",
    *sorted((ROOT / "mqi_es/domain").glob("*.py")),
]
SINGLE_SAVES = 2_000
BATCH_EVENTS, BATCHES = 1_000, 50
CODEC_SAMPLE = 100_000
REPLAYS = 2
STATUS_RUNS = 10
QUERY_RUNS = 50
READERS = {
    "ours": "EventFeed over SQLite's own reader (what replay folds)",
    "generic": "EventFeed over RecorderRows (public API, any store)",
    "es-msgpack": "select_notifications + MsgspecMapper",
    "es-json": "select_notifications + default JSON Mapper",
}
REPLAYED = re.compile(r"replayed (\d+) events in ([\d.]+) s")


def default_mapper() -> Mapper[UUID]:
    """What eventsourcing's Application builds when no codec is configured."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


# --- the cached log ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cache:
    folder: Path

    @property
    def log(self) -> Path:
        return self.folder / "events.sqlite"

    @property
    def json_log(self) -> Path:
        """The same events in eventsourcing's default JSON encoding."""
        return self.folder / "events-json.sqlite"

    @property
    def config(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def views(self) -> Path:
        return self.folder / "views.sqlite"

    def head(self) -> int:
        with closing(sqlite3.connect(f"file:{self.log}?mode=ro", uri=True)) as connection:
            return connection.execute("SELECT MAX(rowid) FROM stored_events").fetchone()[0]

    def env(self) -> dict[str, str]:
        return {**os.environ, "MQI_CONFIG": str(self.config), "COLUMNS": "200"}


def prepared_cache(base: Path, events: int) -> tuple[Cache, float | None]:
    """The cached log of ``events`` events, built first if missing or stale; also the
    seconds its build took (``None`` if reused)."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in LOG_SHAPERS)).hexdigest()[:12]
    cache = Cache(base / f"log-{events}-{digest}")
    if cache.folder.is_dir():
        return cache, None
    for stale in base.glob(f"log-{events}-*"):
        shutil.rmtree(stale)
    base.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Built aside and renamed when complete, so an interrupted build is never reused.
    building = Cache(Path(tempfile.mkdtemp(prefix=".building-", dir=base)))
    print(f"building a log of {events:,} events under {base} (once) ...", flush=True)
    try:
        build_log(building.log, events)
        copy_as_json(building.log, building.json_log)
        building.config.write_text(
            "database:\n  path: events.sqlite\n  views_path: views.sqlite\n", encoding="utf-8"
        )
        building.folder.rename(cache.folder)
    except BaseException:
        shutil.rmtree(building.folder)
        raise
    return cache, time.perf_counter() - started


def copy_as_json(log: Path, json_log: Path) -> None:
    """Write every event of ``log`` again into ``json_log`` with the default mapper."""
    ledger = Ledger(sqlite_event_store_env(log))
    target = Application[UUID](env=sqlite_event_store_env(json_log))
    encode, decode = default_mapper().to_stored_event, ledger.mapper.to_domain_event
    try:
        position = 0
        while notes := ledger.recorder.select_notifications(
            position, REPLAY_BATCH, inclusive_of_start=False
        ):
            target.recorder.insert_events([encode(decode(n)) for n in notes])
            position = notes[-1].id
    finally:
        ledger.close()
        target.close()


# --- measuring ---------------------------------------------------------------------------


# Spawns the measured command and writes its peak RSS (KiB) and wall time to argv[1].
# Run from this small process because a child starts with the RSS high-water mark of the
# process it was forked from (Linux keeps it across exec): spawned straight from this
# benchmark, which holds 100k events, every child would seem at least as large as it.
_SPAWNER = """\
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {time.perf_counter() - started}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Process:
    stdout: str
    seconds: float
    peak_rss_mb: float


def run_process(argv: Sequence[str], env: Mapping[str, str]) -> Process:
    """Run ``argv`` (a path and its arguments) to its end; its output, wall time and
    peak RSS."""
    with tempfile.TemporaryDirectory() as scratch:
        figures = Path(scratch) / "figures"
        child = subprocess.run(
            [sys.executable, "-S", "-c", _SPAWNER, str(figures), *argv],
            env=env,
            capture_output=True,
            text=True,
        )
        if child.returncode:
            raise RuntimeError(f"{' '.join(argv)} exited with {child.returncode}:\n{child.stderr}")
        peak_kib, seconds = figures.read_text().split()
    return Process(child.stdout, float(seconds), int(peak_kib) / 1024)


def best_rate(work: Callable[[], object], items: int, *, repeat: int = 3) -> float:
    """Items per second of the fastest of ``repeat`` runs, the cyclic GC paused (as
    timeit does)."""
    gc.collect()
    gc.disable()
    try:
        best = min(_timed(work) for _ in range(repeat))
    finally:
        gc.enable()
    return items / best


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def quantiles_ms(samples: Sequence[float]) -> str:
    return f"min {min(samples) * 1e3:7.1f} ms   median {statistics.median(samples) * 1e3:7.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --- 1. appends --------------------------------------------------------------------------


def bench_appends(scratch: Path) -> None:
    print("\n1. Appends on a fresh SQLite file (eventsourcing's synchronous=FULL)")
    ledger = Ledger(sqlite_event_store_env(scratch / "single.sqlite"))
    started = time.perf_counter()
    for i in range(SINGLE_SAVES):
        fingerprint = f"{i:016x}"
        ledger.detect_case(
            f"new-{i:05d}",
            file_count=12,
            total_bytes=48_000_000,
            fingerprint=fingerprint,
            actor=ACTOR,
        )
    single = time.perf_counter() - started
    ledger.close()

    ledger = Ledger(sqlite_event_store_env(scratch / "batched.sqlite"))
    batches = list(Installation().batches(BATCH_EVENTS * BATCHES, per_save=BATCH_EVENTS))
    events = sum(map(event_count, batches))
    started = time.perf_counter()
    for batch in batches:
        ledger.save(*batch)
    batched = time.perf_counter() - started
    ledger.close()

    def row(label: str, seconds: float, events: int, saves: int) -> None:
        rate, per_save = events / seconds, seconds / saves * 1e3
        print(f"   {label:<52}{rate:>10,.0f} events/s{per_save:>9.2f} ms/save")

    row(
        f"single-event saves (ledger.detect_case x {SINGLE_SAVES:,})",
        single,
        SINGLE_SAVES,
        SINGLE_SAVES,
    )
    row(
        f"batched saves ({len(batches)} x ~{events // len(batches):,} events)",
        batched,
        events,
        len(batches),
    )
    print(f"   {'batched / single':<52}{(events / batched) / (SINGLE_SAVES / single):>9.1f}x")


# --- 2. codec ----------------------------------------------------------------------------


def bench_codec(cache: Cache) -> None:
    ledger = Ledger(sqlite_event_store_env(cache.log))
    notes = ledger.recorder.select_notifications(0, CODEC_SAMPLE, inclusive_of_start=False)
    events = [ledger.mapper.to_domain_event(n) for n in notes]
    ours, default = ledger.mapper, default_mapper()
    print(f"\n2. Codec on {len(events):,} logged events (best of 3, GC paused)")
    print(f"   {'':<28}{'encode ev/s':>13}{'decode ev/s':>13}{'bytes/event':>13}")
    figures = {}
    for label, mapper in (("msgspec (ours)", ours), ("JSON (eventsourcing default)", default)):
        stored: list[StoredEvent] = [mapper.to_stored_event(e) for e in events]
        if [mapper.to_domain_event(s) for s in stored] != events:
            raise AssertionError(f"{label}: events do not survive the round trip")
        encode = best_rate(lambda m=mapper: [m.to_stored_event(e) for e in events], len(events))
        decode = best_rate(
            lambda m=mapper, s=stored: [m.to_domain_event(x) for x in s], len(events)
        )
        size = sum(len(s.state) for s in stored) / len(stored)
        figures[label] = (encode, decode, size)
        print(f"   {label:<28}{encode:>13,.0f}{decode:>13,.0f}{size:>13,.0f}")
    (enc, dec, size), (enc0, dec0, size0) = figures.values()
    print(
        f"   {'ours / default':<28}{enc / enc0:>12.1f}x{dec / dec0:>12.1f}x{size / size0:>12.2f}x"
    )
    ledger.close()


# --- 3. replay ---------------------------------------------------------------------------


def read_all(reader: str, cache: Cache) -> dict[str, float]:
    """In a worker process: read and decode the whole log the ``reader`` way."""
    gc.disable()  # as the replay does while it reads
    if reader in ("ours", "generic"):
        ledger = Ledger(sqlite_event_store_env(cache.log))
        rows = RecorderRows(ledger.recorder, where="bench") if reader == "generic" else None
        feed = EventFeed(ledger, rows)
        started, position, events = time.perf_counter(), 0, 0
        while items := feed.states(after=position, limit=REPLAY_BATCH):
            position, events = items[-1][0], events + len(items)
    else:
        if reader == "es-json":
            app = Application[UUID](env=sqlite_event_store_env(cache.json_log))
            recorder, decode = app.recorder, default_mapper().to_domain_event
        else:
            app = Ledger(sqlite_event_store_env(cache.log))
            recorder, decode = app.recorder, app.mapper.to_domain_event
        started, position, events = time.perf_counter(), 0, 0
        while notes := recorder.select_notifications(
            position, REPLAY_BATCH, inclusive_of_start=False
        ):
            decoded = [decode(n) for n in notes]
            position, events = notes[-1].id, events + len(decoded)
    return {"events": events, "seconds": time.perf_counter() - started}


def bench_replay(cache: Cache) -> None:
    print("\n3. Replay of the whole log, each in its own process (peak RSS of that process)")
    reads = {}
    for reader in READERS:
        worker = run_process(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--keep",
                str(cache.folder),
                "--read",
                reader,
            ],
            os.environ,
        )
        reads[reader] = (json.loads(worker.stdout), worker.peak_rss_mb)

    replays = []
    for _ in range(REPLAYS):
        run = run_process([str(MQI), "replay"], cache.env())
        found = REPLAYED.search(run.stdout)
        if found is None:
            raise RuntimeError(f"unexpected output of mqi replay: {run.stdout!r}")
        replays.append((float(found.group(2)), int(found.group(1)), run))
    (seconds, events, run), *others = sorted(replays, key=lambda r: r[0])
    rate, per_million = events / seconds, seconds * 1e6 / events
    print(
        f"   mqi replay (read, decode, fold, write views), best of {REPLAYS}: {events:,} events"
        f" in {seconds:.2f} s = {rate:,.0f} events/s, peak RSS {run.peak_rss_mb:.0f} MB"
        f" (process wall {run.seconds:.2f} s; other runs: "
        f"{', '.join(f'{other[0]:.2f} s' for other in others)})"
    )
    print(
        f"     targets: >= 150,000 events/s {verdict(rate >= 150_000)}"
        f" | 1M in < 7 s {verdict(per_million < 7)} ({per_million:.2f} s per 1M)"
        f" | peak RSS < 200 MB {verdict(run.peak_rss_mb < 200)}"
    )
    print(f"   reading + decoding only (batches of {REPLAY_BATCH:,}, GC paused):")
    for reader, label in READERS.items():
        figures, rss = reads[reader]
        print(
            f"     {label:<46}{figures['seconds']:6.2f} s"
            f"{figures['events'] / figures['seconds']:>10,.0f} events/s   peak RSS {rss:4.0f} MB"
        )
    ours, default = (reads[r][0]["seconds"] / reads[r][0]["events"] for r in ("ours", "es-json"))
    print(f"   ours / eventsourcing default, reading + decoding: {default / ours:.1f}x")
    generic = reads["generic"][0]["seconds"] / reads["generic"][0]["events"]
    print(f"   SQLite's own reader / the recorder's public API: {generic / ours:.1f}x")
    print(
        "   whole mqi replay / eventsourcing default reading + decoding alone: "
        f"{default * events / seconds:.1f}x"
    )


# --- 4. status ---------------------------------------------------------------------------


def bench_status(cache: Cache) -> None:
    head = cache.head()
    print(f"\n4. mqi status, {head:,}-event log, up-to-date views ({STATUS_RUNS} runs each)")
    first = json.loads(run_process([str(MQI), "status", "--json"], cache.env()).stdout)
    if first["views_behind_log"] != 0 or not sum(first["cases"].values()):
        raise AssertionError(f"views are not up to date with the log: {first}")
    for label, argv, targeted in (
        ("mqi status", [str(MQI), "status"], True),
        ("mqi status --json", [str(MQI), "status", "--json"], True),
        ("python -c pass (start-up floor)", [sys.executable, "-c", "pass"], False),
    ):
        walls = [run_process(argv, cache.env()).seconds for _ in range(STATUS_RUNS)]
        target = f"   target < 150 ms: {verdict(statistics.median(walls) < 0.150)}"
        print(f"   {label:<32}{quantiles_ms(walls)}{target if targeted else ''}")
    reader = ViewReader(cache.views, application_name=LEDGER_NAME)

    def query() -> None:
        with reader.snapshot() as views:
            views.case_counts(), views.slots(), views.hosts()

    walls = [_timed(query) for _ in range(QUERY_RUNS)]
    label = f"in-process query ({QUERY_RUNS} runs)"
    print(f"   {label:<32}{quantiles_ms(walls)}   snapshot: case_counts + slots + hosts")


# --- profiles ----------------------------------------------------------------------------


def print_profiles(cache: Cache) -> None:
    for argv in (["replay"], ["status"]):
        with tempfile.NamedTemporaryFile(suffix=".prof") as out:
            profiled = [sys.executable, "-m", "cProfile", "-o", out.name, str(MQI), *argv]
            run_process(profiled, cache.env())
            text = io.StringIO()
            stats = pstats.Stats(out.name, stream=text).strip_dirs().sort_stats("tottime")
            stats.print_stats(15)
        print(f"\ncProfile of mqi {' '.join(argv)}, top 15 by tottime:")
        print(text.getvalue().split("\n\n", 1)[-1].rstrip())
    child = subprocess.run(
        [sys.executable, "-X", "importtime", str(MQI), "status"],
        env=cache.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    imports = []
    for line in child.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "[us]" not in line:
            own, cumulative, name = line.removeprefix("import time:").split("|")
            imports.append((int(cumulative), int(own), name.rstrip()))
    print("\nmqi status, the 10 biggest imports by cumulative time (python -X importtime):")
    for cumulative, own, name in sorted(imports, reverse=True)[:10]:
        print(f"   {cumulative / 1e3:7.1f} ms cumulative {own / 1e3:6.1f} ms own  {name}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the log")
    parser.add_argument(
        "--keep", type=Path, default=Path("/tmp/mqi-bench"), help="folder of the cached logs"
    )
    parser.add_argument("--profile", action="store_true", help="add profiles at the end")
    parser.add_argument("--read", choices=READERS, help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args(argv)
    if args.read:
        print(json.dumps(read_all(args.read, Cache(args.keep))))
        return
    started = time.perf_counter()
    cache, built = prepared_cache(args.keep, args.events)
    sizes = (
        f"{cache.log.stat().st_size / 1e6:,.0f} MB msgpack, "
        f"{cache.json_log.stat().st_size / 1e6:,.0f} MB JSON copy"
    )
    origin = "reused" if built is None else f"built in {built:.0f} s"
    print(f"log {cache.folder}: {cache.head():,} events ({sizes}; {origin})")
    print(
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory(dir=args.keep) as scratch:
        bench_appends(Path(scratch))
    bench_codec(cache)
    bench_replay(cache)
    bench_status(cache)
    if args.profile:
        print_profiles(cache)
    print(f"\n(benchmark ran {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
