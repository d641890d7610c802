"""The decision core against clocks that jump and nodes whose clocks differ from ours, and
hosts that cannot be used: nothing is killed, failed or quarantined for a clock's sake."""

from datetime import timedelta

from mqi_es.core.actions import Cancel, Submit
from mqi_es.core.commands import AbandonAttempt, FailCase, RecordHostUnavailable
from mqi_es.core.remote import Blindness, Unseen
from mqi_es.core.states import CaseState, HostState, KillCause
from tests.unit.worlds import (
    MONO0,
    POLICY,
    T0,
    case,
    cleared,
    commands,
    decide,
    facts,
    mono,
    raised,
    seen,
    slot,
    standing,
    task,
)

HOUR = timedelta(hours=1)


# --- remote durations on the node's clock -----------------------------------------------


def test_a_node_clock_far_behind_ours_does_not_make_a_short_run_look_over_its_timeout():
    """The node is 30 h behind: its task started 1 h ago by its own clock."""
    node_now = T0 - 30 * HOUR
    running = task(start=node_now - HOUR)
    decision = decide([case()], seen(running, node_time=node_now, skew=-30 * 3600))
    assert "RequestKill" not in commands(decision)


def test_a_node_clock_far_ahead_of_ours_does_not_hide_a_run_over_its_timeout():
    node_now = T0 + 30 * HOUR
    running = task(start=node_now - POLICY.timeout - timedelta(minutes=1))
    decision = decide([case()], seen(running, node_time=node_now, skew=30 * 3600))
    assert commands(decision) == ["RequestKill"]


def test_a_node_clock_that_jumps_during_a_run_neither_kills_it_nor_stretches_it():
    running = task(start=T0 - HOUR)
    first = decide([case()], seen(running))
    later = T0 + timedelta(minutes=1)
    # The node's clock jumps 48 h ahead: the run still started an hour and a minute ago.
    jumped = seen(running, taken_at=later, node_time=later + 48 * HOUR, skew=48 * 3600)
    decision = decide([case()], jumped, now=later, memory=first.memory)
    assert "RequestKill" not in commands(decision)
    assert any("jumped" in a.message for a in raised(decision))
    # Once it is really over its timeout (on our monotonic clock), it is killed.
    over = T0 + POLICY.timeout
    overdue = seen(running, taken_at=over, node_time=over + 48 * HOUR, skew=48 * 3600)
    assert commands(decide([case()], overdue, now=over, memory=decision.memory)) == ["RequestKill"]


# --- our own clock jumping ----------------------------------------------------------------


def test_our_clock_jumping_ahead_kills_nothing_in_that_cycle():
    """Even a case truly over its timeout waits for the next cycle, whose clocks agree."""
    overdue = task(start=T0 - POLICY.timeout - timedelta(minutes=1))
    first = decide([], seen())  # our clocks as they were: nothing running yet
    ten_seconds_later = T0 + timedelta(seconds=10)  # as the monotonic and node clocks see it
    jumped = T0 + timedelta(days=2)  # but our wall clock jumped two days ahead
    decision = decide(
        [case()], seen(overdue, taken_at=ten_seconds_later), now=jumped, at=MONO0 + 10,
        memory=first.memory,
    )  # fmt: skip
    assert "RequestKill" not in commands(decision)
    (alarm,) = raised(decision)
    assert "this machine's clock jumped by +172790 s" in alarm.message
    later = decide(
        [case()], seen(overdue, taken_at=T0 + timedelta(seconds=20)),
        now=jumped + timedelta(seconds=10), at=MONO0 + 20, memory=decision.memory,
    )  # fmt: skip
    assert commands(later) == ["RequestKill"]


def test_our_clock_jumping_back_neither_extends_a_kill_confirmation_nor_stops_it():
    killing = case(state=CaseState.KILLING, kill_cause=KillCause.TIMEOUT)
    first = decide([killing], seen(task()))
    # The wall clock goes back a day; on the monotonic clock the window passes as usual.
    back = T0 - timedelta(days=1)
    past = MONO0 + POLICY.kill_confirm_timeout.total_seconds() + 5
    second = decide([killing], seen(task()), now=back, at=past, memory=first.memory)
    assert facts(second) == ()  # past the window, but the jump's own cycle fails nothing
    third = decide(
        [killing], seen(task()), now=back + timedelta(seconds=1), at=past + 1,
        memory=second.memory,
    )  # fmt: skip
    (record,) = facts(third)
    assert isinstance(record, FailCase) and record.quarantine is True


def test_a_task_first_seen_as_the_nodes_clock_jumps_is_timed_from_its_true_start():
    """The node's clock steps 30 h ahead in the cycle where a task, started an hour ago,
    is first seen running: neither that cycle nor a later one kills it for 31 hours."""
    queued = case(state=CaseState.QUEUED)
    first = decide([queued], seen(task(state="waiting", start=None)))
    started = T0 - HOUR  # by the node's clock before it jumped
    later = T0 + timedelta(seconds=10)
    jumped = seen(task(start=started), taken_at=later, node_time=later + 30 * HOUR,
                  skew=30 * 3600)  # fmt: skip
    decision = decide([queued], jumped, now=later, memory=first.memory)
    assert "RequestKill" not in commands(decision)
    running = case(state=CaseState.RUNNING)
    again_at = later + timedelta(seconds=10)
    again = seen(task(start=started), taken_at=again_at, node_time=again_at + 30 * HOUR,
                 skew=30 * 3600)  # fmt: skip
    assert "RequestKill" not in commands(
        decide([running], again, now=again_at, memory=decision.memory)
    )


def test_kill_resends_follow_the_monotonic_clock_whatever_the_wall_clock_does():
    killing = case(state=CaseState.KILLING, kill_cause=KillCause.TIMEOUT)
    first = decide([killing], seen(task()))
    assert first.actions == (Cancel("n1", task(), "c1"),)
    # The wall clock jumps an hour ahead but only 1 s passed: no resend yet.
    early = decide([killing], seen(task()), now=T0 + HOUR, at=MONO0 + 1, memory=first.memory)
    assert early.actions == ()


def test_the_submit_settle_window_is_monotonic():
    submitting = case(state=CaseState.SUBMITTING)
    settled = {"c1": MONO0 + 30}  # a `pueue add` may land until then
    # However far the wall clock has jumped, a snapshot sent before then does not count.
    assert facts(decide([submitting], seen(), settled_at=settled, now=T0 + 48 * HOUR)) == ()


# --- skew ---------------------------------------------------------------------------------


def test_a_node_clock_beyond_the_skew_bound_raises_one_alarm_until_it_is_back():
    off = seen(skew=POLICY.max_skew.total_seconds() + 5)
    first = decide([], off)
    (alarm,) = raised(first)
    assert "off this machine's" in alarm.message and "+65.0 s" in alarm.message
    later = T0 + timedelta(seconds=10)
    standing_1 = standing(first)
    again = decide([], seen(taken_at=later, skew=65.0), now=later, memory=first.memory,
                   alarms=standing_1)  # fmt: skip
    assert again.records == ()  # neither raised again nor cleared
    # The node's time service steps its clock back in line: that is a jump, not a skew.
    standing_2 = standing(again, standing_1)
    back = decide([], seen(taken_at=later, skew=0.5), now=later, memory=again.memory,
                  alarms=standing_2)  # fmt: skip
    assert [a.key for a in raised(back)] == [f"node-clock-jump:n1:{later.isoformat()}"]
    assert cleared(back) == [standing_1[0].alarm_id]  # the skew is over
    off_again = decide([], seen(taken_at=later, skew=-90.0), now=later, memory=back.memory,
                       alarms=standing(back, standing_2))  # fmt: skip
    assert [a.key for a in raised(off_again)] == ["skew:n1"]  # jumping still: said already


def test_an_alarm_on_a_host_not_seen_stays_raised():
    first = decide([], seen(skew=500.0))
    hidden = decide([], Unseen("refused"), memory=first.memory, alarms=standing(first))
    assert cleared(hidden) == [] and raised(hidden) == []  # nobody can tell if it is over


# --- hosts that cannot be used ------------------------------------------------------------

OLD = Unseen("its pueue 2.1.0 is older than 3.0", Blindness.INCOMPATIBLE)


def test_an_incompatible_host_is_recorded_once_with_one_alarm_and_gets_no_case():
    decision = decide([case("c1", CaseState.WAITING)], OLD)
    assert facts(decision) == (
        RecordHostUnavailable(name="n1", state=HostState.INCOMPATIBLE, since=T0,
            reason=OLD.reason,
        ),
    )  # fmt: skip
    assert decision.actions == ()
    (alarm,) = raised(decision)
    assert "pueue 2.1.0" in alarm.message
    again = decide([case("c1", CaseState.WAITING)], OLD, host_state=HostState.INCOMPATIBLE,
                   memory=decision.memory, alarms=standing(decision))  # fmt: skip
    assert facts(again) == () and raised(again) == [] and again.actions == ()


def test_a_case_submitting_to_an_incompatible_host_gets_its_slot_back_and_waits_with_why():
    submitting = case(state=CaseState.SUBMITTING)
    decision = decide([submitting], OLD, host_state=HostState.INCOMPATIBLE)
    (record,) = facts(decision)
    assert isinstance(record, AbandonAttempt)
    assert record.charged is False and record.not_before is None
    assert "pueue 2.1.0" in record.reason


def test_a_missing_group_is_alarmed_once_and_its_slot_not_handed_out():
    only_gpu1 = seen(groups=("gpu1",))
    waiting = [case("c1", CaseState.WAITING), case("c2", CaseState.WAITING)]
    decision = decide(waiting, only_gpu1, slots=[slot("gpu0"), slot("gpu1")])
    assert decision.actions == (Submit("c1", "n1", "gpu1"),)
    (alarm,) = raised(decision)
    assert "n1/gpu0" in alarm.message and "does not exist" in alarm.message
    again = decide(waiting, only_gpu1, slots=[slot("gpu0"), slot("gpu1")],
                   memory=decision.memory, alarms=standing(decision))  # fmt: skip
    assert raised(again) == [] and cleared(again) == []


def test_monotonic_time_in_the_world_is_what_the_decision_remembers():
    decision = decide([], seen(), at=MONO0 + 3)
    assert decision.memory.clock == (T0, MONO0 + 3)
    assert mono(T0) == MONO0


def test_a_retry_backoff_is_not_stretched_by_our_clock_going_back():
    later = case("c1", CaseState.WAITING, not_before=T0 + timedelta(seconds=30))
    assert decide([later]).actions == ()  # the backoff runs
    # The wall clock went back two days since the backoff was recorded: no 48 h wait.
    back = T0 - timedelta(days=2)
    assert decide([later], now=back, at=MONO0 + 1).actions == (Submit("c1", "n1", "gpu0"),)
