"""How fast `mqi web` answers `/api/cases` with 100,000 cases in the views.

    .venv/bin/python benchmarks/bench_web.py [--cases 100000] [--requests 40]

A log of about ``--cases`` cases (``_history``: nine events a case, some with outages),
its views built, then the dashboard served by uvicorn on loopback, as `mqi web` serves it,
and asked over HTTP with the token: the first page, a page deep in the history, a state
filter and a search by id. Per kind: median and 95th percentile of the time to the whole
answer. The alternative, measured in the same run: every case at once, as `mqi cases
--json` reads them. Target: under 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _history import build_log

from cli.context import load_context
from cli.json_output import as_json
from cli.web.server import web_server

TOKEN = "benchmark-token-of-the-dashboard"
PER_CASE = 9.5  # events per case in _history's installation


def timed(client: httpx.Client, url: str, requests: int) -> tuple[float, float, int]:
    """Median and 95th percentile (ms) of ``requests`` GETs of ``url``; cases in an answer."""
    spent, shown = [], 0
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(url)
        answer.raise_for_status()
        shown = len(answer.json()["cases"])
        spent.append((time.perf_counter() - started) * 1e3)
    spent.sort()
    return statistics.median(spent), spent[int(len(spent) * 0.95) - 1], shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mqi-bench-web-") as folder:
        root = Path(folder)
        (root / "token").write_text(TOKEN)
        (root / "mqi.yaml").write_text(
            "database:\n  path: var/events.sqlite\n  views_path: var/views.sqlite\n"
            "web:\n  port: 18931\n  token_file: token\n"
        )
        context = load_context(str(root / "mqi.yaml"))
        started = time.perf_counter()
        events = build_log(context.config.database.path, int(args.cases * PER_CASE))
        context.catch_up()
        with context.views().snapshot() as views:
            total = sum(views.case_counts().values())
            middle = views.cases_page(limit=total // 2)[0][-1].arrival
        print(f"{total:,} cases ({events:,} events), log and views built in "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip

        server = web_server(context)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{server.config.port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            client.get("/api/cases").raise_for_status()  # warm: templates, connections
            asks = {
                "first page": "/api/cases",
                "deep page (half way)": f"/api/cases?before={middle}",
                "state=failed": "/api/cases?state=failed",
                "search q=00042": "/api/cases?q=00042",
            }
            worst = 0.0
            for name, url in asks.items():
                median, p95, shown = timed(client, url, args.requests)
                worst = max(worst, p95)
                print(f"/api/cases {name:<22} median {median:6.1f} ms, p95 {p95:6.1f} ms "
                      f"({shown} cases)")  # fmt: skip
        server.should_exit = True
        thread.join(timeout=10)

        started = time.perf_counter()
        with context.views().snapshot() as views:
            every = as_json(views.cases())
        unpaged = (time.perf_counter() - started) * 1e3
        print(f"\nthe alternative, every case at once (as `mqi cases --json` reads them): "
              f"{unpaged:,.0f} ms for {len(every):,} cases")  # fmt: skip
        print(f"slowest /api/cases p95 {worst:.1f} ms: {unpaged / worst:.0f}x faster than every "
              f"case at once; under 50 ms: {'yes' if worst < 50 else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    main()
