"""Faults stay where they happen: an adapter that raises, an action that keeps failing, a
refused record, a cycle that fails. The daemon's real shell, ledger and views, with port
fakes that raise or answer "unknown"."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.bus import HANDLERS
from mqi_es.app.ledger import Ledger
from mqi_es.bootstrap import build_daemon
from mqi_es.config import load_config
from mqi_es.core.commands import MarkSlotBusy
from mqi_es.core.errors import SlotError
from mqi_es.core.ids import task_label
from mqi_es.core.outcome import Ok, Unknown
from mqi_es.core.reactions import Fetched, Unwritable
from mqi_es.core.remote import Blindness, RemoteSlot, RemoteTask, Seen, StatusSnapshot, Unseen
from mqi_es.core.states import AlarmKind, HostState
from mqi_es.runtime import Daemon
from projections.live import LiveViews

INTERVAL = 0.1
CREATED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class FakeHost:
    """A RemoteHost whose answers the test sets; ``raises`` makes a method raise."""

    def __init__(self, name: str, snapshot: StatusSnapshot | None = None) -> None:
        self.name = name
        self.snapshot = snapshot or StatusSnapshot({}, {"gpu0": RemoteSlot(open=True)})
        self.raises: dict[str, Exception] = {}
        self.answers: dict[str, object] = {}
        self.calls: dict[str, int] = {}

    async def _call(self, method: str, default: object) -> object:
        self.calls[method] = self.calls.get(method, 0) + 1
        if method in self.raises:
            raise self.raises[method]
        return self.answers.get(method, default)

    async def observe(self):
        return await self._call("observe", Seen(self.snapshot, time.monotonic()))

    async def fetch(self, remote_dir, local_dir, *, progress=None):
        return await self._call("fetch", Unknown("not set"))

    async def release(self, slot):
        return await self._call("release", Ok(""))

    async def cancel(self, task):
        return await self._call("cancel", Ok(""))

    async def free_space(self):
        return await self._call("free_space", Unknown("not measured"))

    async def close(self) -> None:
        pass


def make_daemon(tmp_path: Path, *hosts: FakeHost, groups=("gpu0",)) -> Daemon:
    (tmp_path / "incoming").mkdir()
    settings = {
        "hosts": [
            {"name": h.name, "host": "127.0.0.1", "remote_command": "true", "groups": list(groups),
             "reconnect_backoff_cap_seconds": 1}
            for h in hosts
        ],
        "scanner": {"watch_path": "incoming"},
        "main_loop": {"sleep_interval_seconds": INTERVAL},
    }  # fmt: skip
    (tmp_path / "mqi.yaml").write_text(yaml.safe_dump(settings))
    config = load_config(tmp_path / "mqi.yaml").config
    ledger = Ledger(sqlite_event_store_env(config.database.path))
    views = LiveViews(ledger, config.database.views_path)
    daemon = build_daemon(config, ledger, views, {h.name: h for h in hosts})
    daemon.register_configuration()
    return daemon


async def cycles(daemon: Daemon, seconds: float) -> int:
    """Run the daemon's cycle every INTERVAL for ``seconds``; returns how many ran."""
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await daemon.cycle()
        count += 1
        await asyncio.sleep(INTERVAL)
    await asyncio.gather(*daemon._inflight.values(), return_exceptions=True)
    return count


def tracebacks(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if text in r.getMessage() and r.exc_info)


def retrieving_case(daemon: Daemon, case_id: str = "c1") -> None:
    """A case whose task succeeded on host ``n1``: the next step is fetching its results."""
    ledger = daemon.bus.ledger
    ledger.detect_case(case_id, file_count=1, total_bytes=1, fingerprint="f", actor="t")
    ledger.start_submission(case_id, host="n1", slot="gpu0", remote_base_dir="~/m", actor="t")
    ledger.record_upload(
        case_id, attempt=1, files=1, bytes=1, seconds=0.1, digests=[], manifest_sha256="", actor="t"
    )
    ledger.record_enqueued(case_id, attempt=1, task_id=0, created_at=CREATED, actor="t")
    ledger.record_remote_success(case_id, attempt=1, ended_at=CREATED, actor="t")
    daemon.views.catch_up()


def test_an_adapter_that_raises_is_contained_to_its_host_logged_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = FakeHost("good"), FakeHost("bad")
    bad.raises["observe"] = RuntimeError("a bug in the adapter")
    daemon = make_daemon(tmp_path, good, bad)
    with caplog.at_level(logging.INFO):
        count = asyncio.run(cycles(daemon, 2.0))
    assert good.calls["observe"] == count  # the other host is polled every cycle
    assert 2 <= bad.calls["observe"] < count  # retried, with backoff
    assert tracebacks(caplog, "the status query failed unexpectedly") == 1
    with daemon.views.snapshot() as views:
        states = {h.name: h.state for h in views.hosts()}
    # Our own fault says nothing about the node: no outage is recorded for it.
    assert states == {"good": HostState.REACHABLE, "bad": HostState.UNKNOWN}


def test_an_action_that_raises_is_retried_with_backoff_and_its_traceback_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = FakeHost("n1")
    host.raises["fetch"] = RuntimeError("a bug in the download")
    daemon = make_daemon(tmp_path, host)
    retrieving_case(daemon)
    with caplog.at_level(logging.INFO):
        count = asyncio.run(cycles(daemon, 2.0))
    assert 2 <= host.calls["fetch"] <= 6 < count  # 0.1, 0.2, 0.4, 0.8 s apart: not every cycle
    assert tracebacks(caplog, "Fetch failed unexpectedly") == 1


def test_results_that_cannot_be_written_here_are_fetched_again_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = FakeHost("n1")
    host.answers["fetch"] = Unwritable("results cannot be written here: No space left on device")
    daemon = make_daemon(tmp_path, host)
    retrieving_case(daemon)
    with caplog.at_level(logging.INFO):
        count = asyncio.run(cycles(daemon, 2.0))
    assert 2 <= host.calls["fetch"] <= 6 < count
    said = [r.getMessage() for r in caplog.records if "No space left on device" in r.getMessage()]
    assert len([m for m in said if "trying again" in m]) == 1  # then counted, not repeated
    assert len([m for m in said if m.startswith("ALARM")]) == 1  # and alarmed once
    with daemon.views.snapshot() as views:
        assert views.case("c1").state.value == "retrieving"  # no fact: the node has them
        (alarm,) = views.alarms(standing_only=True)
    assert (alarm.kind, alarm.case_id) == (AlarmKind.RESULTS_UNWRITABLE, "c1")
    assert alarm.message == (
        "the results of case c1 cannot be written here: No space left on device; they stay "
        "safe on the node and are fetched again until they can be written"
    )
    host.answers["fetch"] = Fetched(1, 4, str(tmp_path / "results"))
    asyncio.run(cycles(daemon, 3.0))  # the next fetch, after its backoff, writes them
    with daemon.views.snapshot() as views:
        assert views.case("c1").state.value == "completed"
        assert views.alarms(standing_only=True) == []  # cleared with its condition


def test_a_refused_record_without_a_case_does_not_hold_back_another_slots_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    label = task_label("c1", 1)
    ours = RemoteTask(id=1, label=label, slot="gpu1", state="held", result=None,
                      exit_code=None, created_at=CREATED, start=None, end=None)  # fmt: skip
    foreign = RemoteTask(id=2, label="someone else's", slot="gpu0", state="running",
                         result=None, exit_code=None, created_at=CREATED, start=CREATED,
                         end=None)  # fmt: skip
    groups = {"gpu0": RemoteSlot(open=True), "gpu1": RemoteSlot(open=False)}
    host = FakeHost("n1", StatusSnapshot({1: ours, 2: foreign}, groups))
    daemon = make_daemon(tmp_path, host, groups=("gpu0", "gpu1"))
    ledger = daemon.bus.ledger
    ledger.detect_case("c1", file_count=1, total_bytes=1, fingerprint="f", actor="t")
    ledger.start_submission("c1", host="n1", slot="gpu1", remote_base_dir="~/m", actor="t")
    ledger.record_enqueued("c1", attempt=1, task_id=1, created_at=CREATED, actor="t")

    def refuse(*args, **kwargs):
        raise SlotError("another process changed the slot first")

    monkeypatch.setitem(HANDLERS, MarkSlotBusy, refuse)  # the record about gpu0 is refused
    asyncio.run(cycles(daemon, 0.3))
    assert host.calls.get("release", 0) >= 1  # gpu1's release still went out


def test_a_failing_cycle_is_logged_once_and_retried_with_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = make_daemon(tmp_path, FakeHost("n1"))
    real_catch_up = daemon.views.catch_up
    calls = []

    def failing_catch_up() -> int:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return real_catch_up()  # start-up succeeds; every cycle after it fails
        raise OSError(28, "No space left on device")

    daemon.views.catch_up = failing_catch_up  # type: ignore[method-assign]

    async def run_for(seconds: float) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await daemon.run(stop)

    with caplog.at_level(logging.INFO):
        asyncio.run(run_for(2.0))
    cycles_tried = len(calls) - 1
    assert 2 <= cycles_tried <= 6  # 0.1, 0.2, 0.4, 0.8 s apart instead of every 0.1 s
    assert tracebacks(caplog, "a cycle failed") == 1


def test_a_query_without_an_answer_yet_records_no_outage(tmp_path: Path) -> None:
    host = FakeHost("n1")
    host.answers["observe"] = Unseen("no answer yet", Blindness.PENDING)
    daemon = make_daemon(tmp_path, host)
    asyncio.run(cycles(daemon, 0.3))
    assert daemon.bus.ledger.host("n1").version == 1  # registered, nothing since
    with daemon.views.snapshot() as views:
        assert views.hosts()[0].state is HostState.UNKNOWN


class HungHost(FakeHost):
    async def observe(self):
        self.calls["observe"] = self.calls.get("observe", 0) + 1
        await asyncio.Event().wait()  # never answers


def test_a_host_that_never_answers_does_not_hold_up_the_others_from_the_first_cycle(
    tmp_path: Path,
) -> None:
    fast, hung = FakeHost("fast"), HungHost("hung")
    (tmp_path / "incoming").mkdir()
    settings = {
        "hosts": [{"name": h.name, "host": "127.0.0.1", "remote_command": "true",
                   "groups": ["gpu0"]} for h in (fast, hung)],
        "scanner": {"watch_path": "incoming"},
        "main_loop": {"sleep_interval_seconds": INTERVAL},
    }  # fmt: skip
    (tmp_path / "mqi.yaml").write_text(yaml.safe_dump(settings))
    config = load_config(tmp_path / "mqi.yaml").config
    ledger = Ledger(sqlite_event_store_env(config.database.path))
    views = LiveViews(ledger, config.database.views_path)
    daemon = build_daemon(config, ledger, views, {"fast": fast, "hung": hung}, query_wait=0.5)

    async def run_for(seconds: float) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await daemon.run(stop)

    asyncio.run(run_for(2.0))
    # One wait of 0.5 s for the silent host, then a cycle every 0.1 s for the other: not
    # one cycle per wait (4), nor nothing while a start-up check waits on it.
    assert fast.calls["observe"] >= 6
    assert hung.calls["observe"] == 1  # its query goes on; no pile of queries
