"""The daemon's cycle with in-process stand-ins for the remote hosts: a slow node never
holds up the others, and one that stops answering is polled again with capped backoff."""

import asyncio
import time
from pathlib import Path

import yaml

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.bootstrap import build_daemon
from mqi_es.config import load_config
from mqi_es.core.outcome import Unknown
from mqi_es.core.remote import Seen, StatusSnapshot, Unseen
from mqi_es.runtime import QUERY_WAIT_SECONDS, Daemon
from projections.live import LiveViews


class QuietHost:
    """A RemoteHost whose status query answers after ``delay`` seconds (or never)."""

    def __init__(self, name: str, delay: float, answer: object) -> None:
        self.name, self.delay, self.answer, self.queries = name, delay, answer, 0

    async def observe(self):
        self.queries += 1
        await asyncio.sleep(self.delay)
        return self.answer

    async def free_space(self):
        return Unknown("not measured")

    async def close(self) -> None:
        pass


def make_daemon(tmp_path: Path, hosts: dict[str, QuietHost]) -> Daemon:
    (tmp_path / "incoming").mkdir()
    settings = {
        "hosts": [
            {
                "name": name,
                "host": "127.0.0.1",
                "remote_command": "true",
                "groups": ["gpu0"],
                "reconnect_backoff_cap_seconds": 1,
            }
            for name in hosts
        ],
        "scanner": {"watch_path": "incoming"},
        "main_loop": {"sleep_interval_seconds": 0.1},
    }
    (tmp_path / "mqi.yaml").write_text(yaml.safe_dump(settings))
    config = load_config(tmp_path / "mqi.yaml").config
    ledger = Ledger(sqlite_event_store_env(config.database.path))
    daemon = build_daemon(config, ledger, LiveViews(ledger, config.database.views_path), hosts)
    daemon.register_configuration()
    return daemon


def test_a_hanging_node_does_not_hold_up_the_others(tmp_path):
    seen = Seen(StatusSnapshot({}, {}), time.monotonic())
    hosts = {"fast": QuietHost("fast", 0.0, seen), "hung": QuietHost("hung", 3600, seen)}
    daemon = make_daemon(tmp_path, hosts)

    async def two_cycles():
        first = await daemon._observe(time.monotonic())
        second = await daemon._observe(time.monotonic())
        return first, second

    first, second = asyncio.run(asyncio.wait_for(two_cycles(), 4 * QUERY_WAIT_SECONDS))
    assert first["fast"] is seen and second["fast"] is seen
    assert isinstance(first["hung"], Unseen) and isinstance(second["hung"], Unseen)
    assert (hosts["fast"].queries, hosts["hung"].queries) == (2, 1)  # no pile of queries


def test_an_unreachable_node_is_polled_again_with_capped_backoff(tmp_path):
    down = QuietHost("down", 0.0, Unseen("connection refused"))
    daemon = make_daemon(tmp_path, {"down": down})

    async def cycles(count: int):
        for _ in range(count):
            await daemon._observe(time.monotonic())
            await asyncio.sleep(0.35)

    asyncio.run(cycles(8))
    # 8 cycles 0.35 s apart: polled at 0, then after 0.1, 0.2, 0.4, then the 1 s cap...
    assert 3 <= down.queries < 8
