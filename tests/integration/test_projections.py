"""Views on real SQLite files: exactly once through crashes, clean current rows, atomic replay."""

import multiprocessing
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.run_progress import RunProgress
from mqi_es.core.states import CaseState, FailureCategory, HostState, SlotState
from projections import generations, runner
from projections.feed import EventFeed
from projections.history import case_history
from projections.reader import ViewReader

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class World:
    def __init__(self, root: Path) -> None:
        self.events = root / "events.sqlite"
        self.link = root / "views.sqlite"
        self.ledger = Ledger(sqlite_event_store_env(self.events))
        self.feed = EventFeed(self.ledger)

    def catch_up(self, **kwargs) -> int:
        store = runner.open_views(self.link, self.feed)
        try:
            return runner.catch_up(store, self.feed, **kwargs)
        finally:
            store.close()

    def views(self) -> ViewReader:
        return ViewReader(self.link, application_name=self.ledger.name)


def run_cases(ledger: Ledger, count: int) -> None:
    ledger.register_host("n1", "127.0.0.1", actor="daemon")
    ledger.register_slot("n1", "gpu0", actor="daemon")
    for i in range(count):
        case_id = f"c{i}"
        ledger.detect_case(case_id, file_count=1, total_bytes=2, fingerprint="f", actor="daemon")
        ledger.start_submission(case_id, host="n1", slot="gpu0", remote_base_dir="~", actor="d")
        ledger.record_enqueued(case_id, attempt=1, task_id=i, created_at=NOW, actor="daemon")
        ledger.fail_case(
            case_id, category=FailureCategory.CASE_FAILURE, actor="daemon", reason="exit 2",
            exit_code=2,
        )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_no_stale_gpu_or_task_association_on_a_terminal_case_while_its_history_keeps_them(world):
    run_cases(world.ledger, 1)
    world.ledger.record_host_unavailable(
        "n1", state=HostState.UNREACHABLE, since=NOW, actor="daemon", reason="refused"
    )
    world.catch_up()
    with world.views().snapshot() as views:
        case = views.case("c0")
        assert (case.state, case.failure, case.exit_code) == (
            CaseState.FAILED, FailureCategory.CASE_FAILURE, 2,
        )  # fmt: skip
        assert (case.host, case.slot, case.task_id, case.label) == (None, None, None, None)
        assert views.slots()[0].state is SlotState.FREE
        assert views.hosts()[0].state is HostState.UNREACHABLE
        trail = case_history(world.feed, views, "c0")
    assert [(e.subject, e.event) for e in trail] == [
        ("case c0", "Detected"),
        ("case c0", "SubmissionStarted"),
        ("gpu n1/gpu0", "Allocated"),
        ("case c0", "TaskEnqueued"),
        ("case c0", "Failed"),
        ("gpu n1/gpu0", "Released"),
        (f"alarm {trail[-1].notification_id}", "Raised"),  # the failure's alarm, same save
    ]
    started = trail[1]
    assert (started.details["host"], started.details["slot"]) == ("n1", "gpu0")
    assert trail[3].details["task_id"] == 0


def test_host_events_during_an_attempt_appear_in_its_history(world):
    world.ledger.register_host("n1", "127.0.0.1", actor="daemon")
    world.ledger.register_slot("n1", "gpu0", actor="daemon")
    world.ledger.detect_case("c0", file_count=1, total_bytes=2, fingerprint="f", actor="d")
    world.ledger.start_submission("c0", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    world.catch_up()  # the outage is applied in a later batch than the allocation
    world.ledger.record_host_unavailable(
        "n1", state=HostState.UNREACHABLE, since=NOW, actor="daemon", reason="timed out"
    )
    world.ledger.record_host_reachable("n1", at=NOW.replace(minute=3), actor="daemon")
    world.catch_up()
    with world.views().snapshot() as views:
        trail = case_history(world.feed, views, "c0")
    assert [e.event for e in trail if e.subject == "host n1"] == [
        "BecameUnavailable",
        "BecameReachable",
    ]
    assert trail[-1].details["outage_seconds"] == 180


def test_an_error_in_the_middle_of_a_batch_applies_none_of_it(world, monkeypatch):
    run_cases(world.ledger, 3)
    world.catch_up(batch=4)
    applied_before = world.views()
    with applied_before.snapshot() as views:
        position = views.position()
    world.ledger.retry_case("c1", actor="user:alice", reason="again")
    world.ledger.retry_case("c2", actor="user:alice", reason="again")

    from projections import projector

    real_apply = projector.Batch.apply
    calls = []

    def failing_apply(self, key, cls, fields, nid):
        calls.append(nid)
        if len(calls) == 2:
            raise RuntimeError("crash in the middle")
        real_apply(self, key, cls, fields, nid)

    monkeypatch.setattr(projector.Batch, "apply", failing_apply)
    with pytest.raises(RuntimeError):
        world.catch_up()
    with world.views().snapshot() as views:
        assert views.position() == position
        assert views.case("c1").state is CaseState.FAILED  # the first event was not kept
    monkeypatch.undo()
    assert world.catch_up() == 4  # each retry: the case's event and its failure alarm cleared
    assert runner.check(world.link, world.feed).ok


def _catch_up_then_die(events: str, link: str) -> None:
    """Catch up in batches of 5 and die (no cleanup at all) inside the third batch."""
    from projections import store

    world_ledger = Ledger(sqlite_event_store_env(Path(events)))
    feed = EventFeed(world_ledger)
    real_write = store.ViewStore._write
    writes = []

    def write_then_maybe_die(self, cursor, batch, last_id):
        writes.append(last_id)
        if len(writes) == 3:
            cursor.executemany(  # half of the batch's rows are written...
                self._upserts["cases"],
                [
                    tuple(r.get(c) for c in store.TABLES["cases"])
                    for r in list(batch.rows["cases"].values())[:1]
                ],
            )
            os._exit(17)  # ...and the process dies before its position is recorded
        real_write(self, cursor, batch, last_id)

    store.ViewStore._write = write_then_maybe_die
    views = runner.open_views(Path(link), feed)
    runner.catch_up(views, feed, batch=5)


def test_a_process_killed_between_rows_and_position_neither_repeats_nor_skips(world):
    run_cases(world.ledger, 6)
    spawn = multiprocessing.get_context("spawn")
    child = spawn.Process(target=_catch_up_then_die, args=(str(world.events), str(world.link)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 17
    with world.views().snapshot() as views:
        assert views.position() == 10  # two whole batches of five
    world.catch_up(batch=5)
    report = runner.check(world.link, world.feed)
    assert report.ok and report.position == world.feed.head()


def _replay_then_die(events: str, link: str) -> None:
    ledger = Ledger(sqlite_event_store_env(Path(events)))

    def die(position: int, head: int) -> None:
        os._exit(18)

    runner.REPLAY_BATCH = 5
    runner.replay(Path(link), EventFeed(ledger), progress=die)


def test_a_replay_killed_halfway_leaves_the_old_views_in_use(world):
    run_cases(world.ledger, 4)
    world.catch_up()
    old = generations.current(world.link)
    spawn = multiprocessing.get_context("spawn")
    child = spawn.Process(target=_replay_then_die, args=(str(world.events), str(world.link)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 18
    assert generations.current(world.link) == old
    with world.views().snapshot() as views:
        assert len(views.cases()) == 4
    summary = runner.replay(world.link, world.feed)
    assert summary.events == world.feed.head()
    assert generations.current(world.link) != old and not old.exists()
    assert sorted(p.name for p in world.link.parent.glob("views.sqlite.gen*")) == [
        summary.path.name
    ]  # the dead replay's half-built generation was cleared away


def test_check_reports_a_view_that_differs_from_the_log(world):
    run_cases(world.ledger, 2)
    world.catch_up()
    assert runner.check(world.link, world.feed).ok
    connection = sqlite3.connect(generations.current(world.link))
    connection.execute("UPDATE cases SET state = 'completed' WHERE case_id = 'c1'")
    connection.commit()
    connection.close()
    report = runner.check(world.link, world.feed)
    assert [d.table for d in report.differences] == ["cases"]
    assert len(report.differences[0].only_live) == 1


def test_check_compares_at_the_live_position_while_the_log_grows(world):
    run_cases(world.ledger, 2)
    world.catch_up()
    applied = world.feed.head()
    # A case (its detection and name claim) the views have not applied yet.
    world.ledger.detect_case("late", file_count=1, total_bytes=1, fingerprint="f", actor="d")
    report = runner.check(world.link, world.feed)
    assert report.ok and report.position == applied < world.feed.head()


def test_a_runs_progress_is_kept_per_attempt_and_an_ended_run_keeps_how_far_it_got(world):
    ledger = world.ledger
    run_cases(ledger, 0)
    ledger.detect_case("c1", file_count=1, total_bytes=2, fingerprint="f", actor="daemon")
    ledger.start_submission("c1", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    ledger.record_enqueued("c1", attempt=1, task_id=3, created_at=NOW, actor="daemon")
    ledger.record_started("c1", attempt=1, started_at=NOW, actor="daemon")
    ledger.record_progress("c1", attempt=1, done=4, total=18, actor="daemon")

    def shown():
        world.catch_up()
        with world.views().snapshot() as views:
            return views.case("c1").progress

    assert shown() == RunProgress(4, 18)
    ledger.fail_case("c1", category=FailureCategory.CASE_FAILURE, actor="d", reason="exit 2")
    assert shown() == RunProgress(4, 18)  # how far the failed run got
    ledger.retry_case("c1", actor="user:a", reason="again")
    ledger.start_submission("c1", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    assert shown() is None  # the new attempt has not said yet
    runner.replay(world.link, world.feed)
    assert shown() is None
