"""End-to-end orchestration throughput: cases per minute through the sandbox node.

    .venv/bin/python benchmarks/bench_throughput.py [--cases N] [--slots S]

A real `mqi run` process and a sandbox node (asyncssh server + pueue stand-in) with S GPU
slots; N cases whose simulation takes no time are dropped into the watch folder at once,
and the clock runs from the drop until the last one is completed (registered, uploaded,
queued, run, results fetched). Target: at least 120 cases per minute with 8 slots.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mqi_es.sandbox import ThreadedSandboxNode
from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, cases, wait_for

TARGET_PER_MINUTE = 120


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=120)
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    groups = tuple(f"gpu{i}" for i in range(args.slots))
    with (
        tempfile.TemporaryDirectory() as tmp,
        ThreadedSandboxNode(Path(tmp) / "node", groups=groups) as node,
    ):
        config = write_config(
            Path(tmp) / "site",
            node,
            host={"groups": list(groups)},
            main_loop={"sleep_interval_seconds": 0.2},
            scanner={"quiescence_period_seconds": 0.3},
        )
        daemon = DaemonProcess(config)
        try:
            wait_for(lambda: (config.parent / "var" / "views.sqlite").exists(), timeout=30)
            names = [f"bench-{i:04d}" for i in range(args.cases)]
            started = time.monotonic()
            for name in names:
                drop_case(config.parent / "incoming", name, SUCCEEDS, plan_bytes=64 * 1024)
            found = wait_for(all_ended(config, names), timeout=600, daemon=daemon, interval=0.5)
            elapsed = time.monotonic() - started
        finally:
            daemon.stop()
        completed = sum(1 for c in found.values() if c["state"] == "completed")
        attempts = sum(c["attempt"] for c in cases(config).values())
    per_minute = completed / elapsed * 60
    print(
        f"{completed}/{args.cases} cases completed with {args.slots} GPU slots "
        f"in {elapsed:.1f} s ({attempts} attempts)"
    )
    verdict = "met" if per_minute >= TARGET_PER_MINUTE else "MISSED"
    print(
        f"throughput: {per_minute:.0f} cases/min; target >= {TARGET_PER_MINUTE}: "
        f"{per_minute / TARGET_PER_MINUTE:.2f}x ({verdict})"
    )


if __name__ == "__main__":
    main()
