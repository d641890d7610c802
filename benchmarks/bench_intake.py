"""Intake benchmark: registration latency and idle CPU, with inotify and with polling.

    .venv/bin/python benchmarks/bench_intake.py [--idle-seconds 20] [--quiescence 2]

Latency: time from the last write into a case to its registration (target: at most
quiescence + 1.5 s). Idle CPU: CPU time of the whole process (all threads, the watcher's
included) per second of wall time while 1,000 registered cases sit in the watch folder
(target: < 1 % of a core with inotify, < 5 % polling at 1 s). A second idle run gives each
case 50 files, to show that registered cases cost nothing however large they are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from mqi_es.adapters.watch.intake import Intake
from mqi_es.adapters.watch.reports import Arrival

POLL_MS = 1000  # the production default


class TimingSink:
    def __init__(self, known: set[str] | None = None) -> None:
        self.known = set(known or ())
        self.ready_at: dict[str, float] = {}

    def is_known(self, key: str) -> bool:
        return key in self.known

    def case_ready(self, arrival: Arrival) -> None:
        self.ready_at[arrival.case_id] = time.monotonic()
        self.known.add(arrival.case_id)

    def case_refused(self, raw_name_repr: str, reason: str) -> None:
        self.known.add(raw_name_repr)

    def case_held(self, name: str, reason: str) -> None:
        pass


@contextlib.asynccontextmanager
async def running(root: Path, sink: TimingSink, polling: bool, quiescence: float, rescan: float):
    intake = Intake(
        root,
        quiescence=quiescence,
        force_polling=polling,
        poll_delay_ms=POLL_MS,
        rescan_interval=rescan,
        is_known=sink.is_known,
        sink=sink,
    )
    task = asyncio.create_task(intake.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def copy_case(case: Path, files: int, pause: float) -> float:
    """Write a case file by file like a slow copy; return the time of the last write."""
    case.mkdir()
    for i in range(files):
        (case / f"CT{i:03d}.dcm").write_bytes(b"\0" * 65536)
        await asyncio.sleep(pause)
    return time.monotonic()


async def latency(polling: bool, quiescence: float, cases: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sink = TimingSink()
        async with running(root, sink, polling, quiescence, rescan=30.0):
            await asyncio.sleep(0.5)
            last_writes = await asyncio.gather(
                *(copy_case(root / f"L{i}", 10, 0.05 + 0.01 * i) for i in range(cases))
            )
            deadline = time.monotonic() + quiescence * 3 + 10
            while len(sink.ready_at) < cases and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        return [sink.ready_at[f"L{i}"] - last for i, last in enumerate(last_writes)]


async def idle_cpu(polling: bool, seconds: float, files_per_case: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = {f"R{i:04d}" for i in range(1000)}
        for name in names:
            (root / name).mkdir()
            for j in range(files_per_case):
                (root / name / f"f{j}.dcm").write_bytes(b"x")
        sink = TimingSink(known=names)
        async with running(root, sink, polling, quiescence=10.0, rescan=5.0):
            await asyncio.sleep(2.0)  # start-up scan done
            cpu, wall = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            used = (time.process_time() - cpu) / (time.monotonic() - wall)
        assert sink.ready_at == {}, "a registered case was registered again"
        return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--quiescence", type=float, default=2.0)
    parser.add_argument("--cases", type=int, default=5)
    args = parser.parse_args()

    print(f"latency from last write to registration (quiescence {args.quiescence:.1f} s)")
    for polling in (False, True):
        mode = f"polling {POLL_MS} ms" if polling else "inotify"
        got = asyncio.run(latency(polling, args.quiescence, args.cases))
        over = [x - args.quiescence for x in got]
        print(
            f"  {mode:<16} median {statistics.median(got):.2f} s  max {max(got):.2f} s  "
            f"beyond quiescence: max {max(over):.2f} s (target <= 1.5 s)  "
            f"ratio max/quiescence {max(got) / args.quiescence:.2f}"
        )

    print(f"idle CPU with 1,000 registered cases, {args.idle_seconds:.0f} s per run")
    for files in (1, 50):
        for polling in (False, True):
            mode = f"polling {POLL_MS} ms" if polling else "inotify"
            target = 5.0 if polling else 1.0
            share = asyncio.run(idle_cpu(polling, args.idle_seconds, files)) * 100
            print(
                f"  {mode:<16} {files:>2} file(s)/case  {share:.3f} % of a core "
                f"(target < {target:.0f} %, ratio {share / target:.3f})"
            )


if __name__ == "__main__":
    main()
