"""Alarms as facts, on a real SQLite log and views: a failure raises one, a retry clears
it, an operator acknowledges one, a condition is raised once, and each shows in the
views, in `mqi history` and after a replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from mqi_es.app.bus import MessageBus
from mqi_es.core.commands import AcknowledgeAlarm, ClearAlarm, FailCase, RaiseAlarm, RetryCase
from mqi_es.core.errors import InvalidTransition
from mqi_es.core.states import AlarmKind, AlarmState, CaseState, FailureCategory
from projections import runner
from projections.history import case_history
from tests.integration.test_projections import NOW, World, run_cases


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def standing(world: World) -> list:
    world.catch_up()
    with world.views().snapshot() as views:
        return views.alarms(standing_only=True)


def test_a_failed_case_raises_one_alarm_saved_with_its_failure(world):
    run_cases(world.ledger, 1)  # c0 fails with exit 2
    (alarm,) = standing(world)
    assert (alarm.kind, alarm.state, alarm.case_id) == (
        AlarmKind.CASE_FAILED,
        AlarmState.OPEN,
        "c0",
    )
    assert alarm.subject == "case c0" and alarm.message == "case c0 failed (case_failure): exit 2"
    assert alarm.number == world.ledger.recorder.max_notification_id()  # the failure's save


def test_a_cancelled_case_raises_no_alarm(world):
    world.ledger.detect_case("c1", file_count=1, total_bytes=1, fingerprint="f", actor="d")
    world.ledger.cancel_case("c1", actor="user:alice", reason="not needed")
    world.catch_up()
    with world.views().snapshot() as views:
        assert views.case("c1").state is CaseState.FAILED
        assert views.alarms() == []


def test_retrying_a_failed_case_clears_its_alarm_in_the_same_save(world):
    run_cases(world.ledger, 1)
    bus = MessageBus(world.ledger, actor="user:alice")
    bus.execute(RetryCase(case_id="c0", reason="fixed the input"))
    assert standing(world) == []
    with world.views().snapshot() as views:
        (alarm,) = views.alarms()
        trail = case_history(world.feed, views, "c0")
    assert (alarm.state, alarm.reason) == (AlarmState.CLEARED, "the case was retried")
    assert [e.event for e in trail][-3:] == ["Raised", "RetryRequested", "Cleared"]


def test_an_operator_acknowledges_an_alarm_once_and_it_is_in_the_case_history(world):
    run_cases(world.ledger, 1)
    (alarm,) = standing(world)
    bus = MessageBus(world.ledger, actor="user:alice")
    bus.execute(AcknowledgeAlarm(alarm_id=alarm.alarm_id, reason="looking into it"))
    with pytest.raises(InvalidTransition):
        bus.execute(AcknowledgeAlarm(alarm_id=alarm.alarm_id, reason="twice"))
    world.catch_up()
    with world.views().snapshot() as views:
        (seen,) = views.alarms()
        trail = case_history(world.feed, views, "c0")
    # A failure stands for a moment: once acknowledged it is dealt with.
    assert (seen.state, seen.acknowledged_by) == (AlarmState.CLEARED, "user:alice")
    assert seen.acknowledged_at is not None and seen.cleared_at is not None
    events = [(e.subject, e.event, e.actor) for e in trail if e.subject.startswith("alarm")]
    name = f"alarm {alarm.number}"
    assert events == [
        (name, "Raised", "daemon"),
        (name, "Acknowledged", "user:alice"),
        (name, "Cleared", "user:alice"),
    ]


def test_a_condition_is_raised_once_and_cleared_once_and_a_replay_shows_the_same(world):
    bus = MessageBus(world.ledger, actor="daemon")
    raise_skew = RaiseAlarm(
        key="skew:n1", kind=AlarmKind.CLOCK_SKEW, subject="host n1", message="65 s off",
        raised_at=NOW, host="n1",
    )  # fmt: skip
    assert bus.handle([raise_skew, raise_skew]) == set()  # the second is known: nothing new
    (alarm,) = standing(world)
    acknowledged = AcknowledgeAlarm(alarm_id=alarm.alarm_id, reason="NTP is being fixed")
    MessageBus(world.ledger, actor="user:bob").execute(acknowledged)
    (still,) = standing(world)
    assert still.state is AlarmState.ACKNOWLEDGED  # a condition stands until it ends
    bus.execute(ClearAlarm(alarm_id=alarm.alarm_id, reason="its condition ended"))
    assert standing(world) == []
    assert runner.check(world.link, world.feed).ok
    with world.views().snapshot() as views:
        (ended,) = views.alarms()
        assert views.alarm(alarm.number) == ended
    assert (ended.state, ended.acknowledged_by, ended.reason) == (
        AlarmState.CLEARED, "user:bob", "its condition ended",
    )  # fmt: skip


def test_the_bus_logs_each_alarm_once_when_it_is_recorded(world, caplog):
    run_cases(world.ledger, 0)
    world.ledger.detect_case("c1", file_count=1, total_bytes=1, fingerprint="f", actor="d")
    world.ledger.start_submission("c1", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    bus = MessageBus(world.ledger, actor="daemon")
    with caplog.at_level("ERROR", logger="mqi.daemon"):
        bus.execute(FailCase(case_id="c1", category=FailureCategory.TIMEOUT, reason="over 24 h"))
    assert [r.getMessage() for r in caplog.records] == ["ALARM case c1 failed (timeout): over 24 h"]
