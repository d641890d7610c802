"""Alarms as the core decides them: raised once when their condition starts, cleared when
it has ended, kept while nobody can tell, and never cleared by absence when they stand for
a moment."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from msgspec.structs import replace

from mqi_es.core.policy import STALL_LIMITS
from mqi_es.core.remote import Unseen
from mqi_es.core.states import AlarmKind, AlarmState, CaseState, HostState
from mqi_es.core.views import HostView
from tests.unit.worlds import (
    POLICY,
    T0,
    case,
    cleared,
    decide,
    mono,
    raised,
    seen,
    standing,
    task,
)

MINUTE = timedelta(minutes=1)


def test_a_case_longer_in_one_state_than_its_stall_limit_raises_one_alarm_until_it_moves_on():
    limit = STALL_LIMITS[CaseState.SUBMITTING]
    stuck = case(state=CaseState.SUBMITTING, state_since=T0 - limit - MINUTE, reason="uploading")
    first = decide([stuck], seen(task(label="other")))
    (alarm,) = raised(first)
    assert alarm.kind is AlarmKind.CASE_STALLED and alarm.about_case == "c1"
    assert alarm.host is None  # judged from the views: the host need not be seen
    assert "submitting for 31 min (more than 30)" in alarm.message and "uploading" in alarm.message
    still = decide([stuck], Unseen("refused"), alarms=standing(first))
    assert raised(still) == [] and cleared(still) == []
    moved_on = decide([replace(stuck, state=CaseState.QUEUED, state_since=T0)], seen(task()),
                      alarms=standing(first))  # fmt: skip
    assert cleared(moved_on) == [standing(first)[0].alarm_id]


def test_a_case_within_its_stall_limit_or_in_a_state_without_one_raises_nothing():
    limit = STALL_LIMITS[CaseState.WAITING]
    waiting = case("c1", CaseState.WAITING, state_since=T0 - limit + MINUTE)
    running = case("c2", CaseState.RUNNING, state_since=T0 - timedelta(days=30))  # its timeout
    assert raised(decide([waiting, running], seen(task(label="x")))) == []


def test_a_stall_limit_set_to_none_in_the_policy_means_never():
    policy = dataclasses.replace(POLICY, stall_limits={})
    stuck = case(state=CaseState.HELD, state_since=T0 - timedelta(days=9))
    assert raised(decide([stuck], seen(), policy=policy)) == []


def test_a_host_down_longer_than_the_bound_raises_one_alarm_cleared_once_it_answers():
    down = HostView(name="n1", address="h", state=HostState.QUEUE_DOWN, updated_at=T0,
                    unreachable_since=T0 - POLICY.host_down - MINUTE,
                    reason="pueued not running")  # fmt: skip
    first = decide([], Unseen("pueued not running"), hosts=[down])
    (alarm,) = raised(first)
    assert alarm.kind is AlarmKind.HOST_DOWN and alarm.subject == "host n1"
    assert "queue service is down for 11 min" in alarm.message
    assert "pueued not running" in alarm.message
    again = decide([], Unseen("pueued not running"), hosts=[down], alarms=standing(first))
    assert raised(again) == [] and cleared(again) == []
    back = replace(down, state=HostState.REACHABLE, unreachable_since=None)
    answered = decide([], seen(), hosts=[back], alarms=standing(first))
    assert cleared(answered) == [standing(first)[0].alarm_id]


def test_a_host_down_for_less_than_the_bound_raises_nothing():
    down = HostView(name="n1", address="h", state=HostState.UNREACHABLE, updated_at=T0,
                    unreachable_since=T0 - POLICY.host_down + MINUTE)  # fmt: skip
    assert raised(decide([], Unseen("refused"), hosts=[down])) == []


def test_an_alarm_that_stands_for_a_moment_is_not_cleared_by_its_absence():
    memory = None
    for _ in range(POLICY.missing_grace):  # the task is gone from the queue
        decision = decide([case()], seen(), memory=memory)
        memory = decision.memory
    (vanished,) = raised(decision)
    assert vanished.kind is AlarmKind.TASK_VANISHED and vanished.about_case == "c1"
    later = decide([case(state=CaseState.WAITING)], seen(), alarms=standing(decision))
    assert cleared(later) == [] and raised(later) == []


def test_an_acknowledged_condition_is_not_raised_again_while_it_lasts():
    off = seen(skew=POLICY.max_skew.total_seconds() + 5)
    first = decide([], off)
    acked = [replace(a, state=AlarmState.ACKNOWLEDGED) for a in standing(first)]
    again = decide([], off, alarms=acked)
    assert raised(again) == [] and cleared(again) == []


def test_cycles_further_apart_than_the_limit_raise_one_overdue_alarm_that_stays_until_acked():
    limit = POLICY.cycle_overdue.total_seconds()
    first = decide([], seen(), now=T0)
    on_time = decide(
        [], seen(), now=T0 + timedelta(seconds=limit), memory=first.memory,
        at=mono(T0) + limit,
    )  # fmt: skip
    assert raised(on_time) == []
    # the wall clock says little time passed; the monotonic clock says the loop was held
    late = decide(
        [], seen(), now=T0 + timedelta(seconds=3), memory=first.memory, at=mono(T0) + limit + 1
    )
    alarms = [a for a in raised(late) if a.kind is AlarmKind.CYCLE_OVERDUE]
    (alarm,) = alarms
    assert alarm.subject == "daemon" and alarm.host is None and alarm.about_case is None
    assert f"{limit + 1:.0f} s after the one before" in alarm.message
    later = decide([], seen(), now=T0 + timedelta(seconds=4), memory=late.memory,
                   at=mono(T0) + limit + 2, alarms=standing(late))  # fmt: skip
    assert cleared(later) == []  # a moment: an operator acknowledges it


def test_the_first_cycle_of_a_process_has_nothing_to_be_late_after():
    assert raised(decide([], seen(), memory=None, at=mono(T0) + 10**6)) == []


def test_a_node_below_its_disk_reserve_raises_one_alarm_and_gets_no_case_until_there_is_room():
    from mqi_es.core.actions import Submit

    reserve = POLICY.node_disk_reserve
    waiting = case("c1", CaseState.WAITING, total_bytes=10**9)
    low = decide([waiting], seen(), disk_free={"n1": reserve - 1})
    (alarm,) = raised(low)
    assert alarm.kind is AlarmKind.NODE_DISK_LOW and alarm.host == "n1"
    assert [a for a in low.actions if isinstance(a, Submit)] == []  # it waits
    tight = decide([waiting], seen(), disk_free={"n1": reserve + 10**9 - 1},
                   alarms=standing(low))  # fmt: skip
    assert [a for a in tight.actions if isinstance(a, Submit)] == []  # would not fit
    assert cleared(tight) == [standing(low)[0].alarm_id]  # above the reserve itself
    room = decide([waiting], seen(), disk_free={"n1": reserve + 10**9})
    assert [type(a) for a in room.actions] == [Submit] and raised(room) == []


def test_room_is_shared_out_in_arrival_order_and_an_unmeasured_node_takes_cases():
    from mqi_es.core.actions import Submit

    reserve = POLICY.node_disk_reserve
    big = case("c1", CaseState.WAITING, total_bytes=3 * 10**9)
    small = case("c2", CaseState.WAITING, total_bytes=10**9)
    decision = decide([big, small], seen(), disk_free={"n1": reserve + 2 * 10**9})
    assert [a.case_id for a in decision.actions if isinstance(a, Submit)] == ["c2"]
    unmeasured = decide([big, small], seen())
    assert [a.case_id for a in unmeasured.actions if isinstance(a, Submit)] == ["c1", "c2"]
