"""Notifications as facts, on a real SQLite log and views: due in the very save of the fact
they tell of, once per channel, only for what ``notifications.on`` names; each attempt
recorded; shown in the views, in `mqi history` and after a replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.app.notice_records import NoticePlan
from mqi_es.core.errors import InvalidTransition
from mqi_es.core.notices import NoticeKind, NoticeTopic
from mqi_es.core.states import AlarmKind
from projections import runner
from projections.history import case_history
from tests.integration.test_projections import NOW, World, run_cases

BOTH = ("webhook", "email")
EVERYTHING = frozenset(NoticeTopic)


def told(root: Path, *, channels=BOTH, topics=EVERYTHING) -> World:
    world = World(root)
    world.ledger = Ledger(
        sqlite_event_store_env(world.events), notices=NoticePlan(channels, frozenset(topics))
    )
    return world


def notifications(world: World, **kw) -> list:
    world.catch_up()
    with world.views().snapshot() as views:
        return views.notifications(**kw)


def kinds(found) -> list[tuple[str, str, str]]:
    return [(n.channel, n.notice.kind.value, n.notice.dedup_key) for n in found]


def test_a_failure_is_due_on_every_channel_in_the_save_of_the_failure(tmp_path):
    world = told(tmp_path, topics={NoticeTopic.FAILED, NoticeTopic.ALARM})
    run_cases(world.ledger, 1)  # c0 fails with exit 2
    found = notifications(world)
    assert kinds(found) == [
        ("webhook", "case_failed", "case_failed:c0#1"),
        ("email", "case_failed", "case_failed:c0#1"),
    ]  # its alarm is not told again as alarm_raised: the failure says it
    head = world.ledger.recorder.max_notification_id()
    assert [n.number for n in found] == [head - 1, head]  # saved with the failure
    notice = found[0].notice
    assert (notice.case_id, notice.state, notice.category, notice.host, notice.reason) == (
        "c0", "failed", "case_failure", "n1", "exit 2",
    )  # fmt: skip
    assert notice.at.tzinfo is not None and not found[0].delivered and found[0].attempts == 0


def test_only_what_on_names_is_told_and_a_failure_alone_is_told_as_its_alarm(tmp_path):
    world = told(tmp_path, channels=("webhook",), topics={NoticeTopic.ALARM})
    run_cases(world.ledger, 1)
    ((channel, kind, _),) = kinds(notifications(world))
    assert (channel, kind) == ("webhook", "alarm_raised")


def test_a_cancel_is_told_to_nobody_and_no_channel_means_nothing_is_ever_due(tmp_path):
    world = told(tmp_path)
    world.ledger.detect_case("c1", file_count=1, total_bytes=1, fingerprint="f", actor="d")
    world.ledger.cancel_case("c1", actor="user:alice", reason="not needed")
    assert notifications(world) == []
    silent = told(tmp_path / "silent", channels=())
    run_cases(silent.ledger, 2)
    assert notifications(silent) == []


def test_a_completed_case_is_told_when_completed_is_on(tmp_path):
    world = told(tmp_path, channels=("email",), topics={NoticeTopic.COMPLETED})
    ledger = world.ledger
    ledger.register_host("n1", "127.0.0.1", actor="daemon")
    ledger.register_slot("n1", "gpu0", actor="daemon")
    ledger.detect_case("c1", file_count=1, total_bytes=2, fingerprint="f", actor="daemon")
    ledger.start_submission("c1", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    ledger.record_enqueued("c1", attempt=1, task_id=1, created_at=NOW, actor="daemon")
    ledger.record_remote_success("c1", attempt=1, ended_at=NOW, actor="daemon")
    ledger.complete_case("c1", attempt=1, files=3, bytes=300, results_dir="/r/c1", digests=[],
                         manifest_sha256="m", actor="daemon")  # fmt: skip
    ((found),) = notifications(world)
    assert (found.notice.kind, found.notice.state, found.notice.reason) == (
        NoticeKind.CASE_COMPLETED, "completed", "3 result file(s), 300 bytes, in /r/c1",
    )  # fmt: skip


def test_an_alarm_is_told_when_raised_and_when_cleared_and_a_retry_clears_a_failure(tmp_path):
    world = told(tmp_path, channels=("webhook",), topics={NoticeTopic.ALARM})
    world.ledger.raise_alarm(
        "host-down:n1", kind=AlarmKind.HOST_DOWN, subject="host n1", message="n1 is down",
        raised_at=NOW, host="n1", actor="daemon",
    )  # fmt: skip
    (raised,) = notifications(world)
    alarm_id = raised.notice.alarm_id
    assert (raised.notice.kind, raised.notice.subject, raised.notice.reason) == (
        NoticeKind.ALARM_RAISED, "host n1", "n1 is down",
    )  # fmt: skip
    world.ledger.clear_alarm(alarm_id, actor="daemon", reason="its condition ended")
    run_cases(world.ledger, 1)
    world.ledger.retry_case("c0", actor="user:bob", reason="fixed the plan")
    found = notifications(world)
    assert [(n.notice.kind.value, n.notice.reason) for n in found] == [
        ("alarm_raised", "n1 is down"),
        ("alarm_cleared", "its condition ended (daemon)"),
        ("alarm_raised", "case c0 failed (case_failure): exit 2"),
        ("alarm_cleared", "the case was retried (user:bob)"),
    ]
    assert len({n.notice.dedup_key for n in found}) == 4


def test_each_attempt_is_recorded_and_shown_in_the_case_history_and_after_a_replay(tmp_path):
    world = told(tmp_path, channels=("webhook",), topics={NoticeTopic.FAILED})
    run_cases(world.ledger, 1)
    (due,) = notifications(world, due_only=True)
    ledger = world.ledger
    ledger.record_delivery(due.notification_id, delivered=False, detail="HTTP 503: busy",
                           actor="daemon")  # fmt: skip
    ledger.record_delivery(due.notification_id, delivered=True, detail="HTTP 204", actor="daemon")
    with pytest.raises(InvalidTransition):
        ledger.record_delivery(due.notification_id, delivered=True, detail="x", actor="daemon")
    assert notifications(world, due_only=True) == []
    (done,) = notifications(world)
    assert (done.delivered, done.attempts, done.last_detail) == (True, 2, "HTTP 204")
    assert done.delivered_at is not None
    with world.views().snapshot() as views:
        trail = case_history(world.feed, views, "c0")
    told_lines = [(e.subject, e.event, e.reason) for e in trail if e.subject == "webhook notice"]
    assert told_lines == [
        ("webhook notice", "Due", "exit 2"),
        ("webhook notice", "Attempted", "HTTP 503: busy"),
        ("webhook notice", "Attempted", "HTTP 204"),
    ]
    runner.replay(world.link, world.feed)
    assert notifications(world) == [done]


def test_a_host_alarm_is_due_once_per_channel_however_often_its_fact_is_repeated(tmp_path):
    world = told(tmp_path, topics={NoticeTopic.ALARM})
    for _ in range(3):
        world.ledger.raise_alarm(
            "down:n1", kind=AlarmKind.HOST_DOWN, subject="host n1", message="down",
            raised_at=NOW, host="n1", actor="daemon",
        )  # fmt: skip
    assert len(notifications(world)) == 2
