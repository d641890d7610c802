"""The decision core, rule by rule: given views, snapshots and the time, what it decides."""

from datetime import timedelta

import pytest

from mqi_es.core.actions import Cancel, FailWithLog, Fetch, Memory, Release, Submit
from mqi_es.core.commands import (
    AbandonAttempt,
    FailCase,
    MarkSlotBusy,
    RecordEnqueued,
    RecordHostReachable,
    RecordHostUnavailable,
    RecordRemoteSuccess,
    RecordStarted,
    RequestKill,
)
from mqi_es.core.ids import task_label
from mqi_es.core.remote import Blindness, Unseen
from mqi_es.core.states import CaseState, FailureCategory, HostState, KillCause, SlotState
from tests.unit.worlds import (
    CREATED,
    POLICY,
    STARTED,
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

# --- the three defects of the original tool ----------------------------------------------


@pytest.mark.parametrize("reason", ["connection refused", "ssh timed out after 10 s"])
def test_unreachable_host_is_not_a_failed_job(reason):
    running = case(state=CaseState.RUNNING)
    decision = decide([running], Unseen(reason))
    assert facts(decision) == (
        RecordHostUnavailable(name="n1", state=HostState.UNREACHABLE, since=T0,
            reason=reason,
        ),
    )  # fmt: skip
    assert decision.actions == ()


def test_a_parse_error_of_pueue_status_is_not_a_failed_job_and_is_recorded_as_unreadable():
    cases = [case("c1", CaseState.RUNNING), case("c2", CaseState.QUEUED, slot="gpu1")]
    decision = decide(cases, Unseen("status could not be parsed", Blindness.UNREADABLE))
    (record,) = facts(decision)
    assert isinstance(record, RecordHostUnavailable)
    assert record.state is HostState.UNREADABLE
    assert decision.actions == ()


def test_a_queue_service_that_is_down_is_recorded_as_such_not_as_an_unreachable_node():
    decision = decide([case()], Unseen("pueue daemon not running", Blindness.QUEUE_DOWN))
    (record,) = facts(decision)
    assert record.state is HostState.QUEUE_DOWN
    assert record.reason == "pueue daemon not running"
    assert decision.actions == ()


def test_what_is_seen_of_a_host_is_recorded_again_only_when_it_changes():
    down = Unseen("pueue daemon not running", Blindness.QUEUE_DOWN)
    assert facts(decide([case()], down, host_state=HostState.QUEUE_DOWN)) == ()
    changed = decide([case()], Unseen("refused"), host_state=HostState.QUEUE_DOWN)
    assert [r.state for r in facts(changed)] == [HostState.UNREACHABLE]


@pytest.mark.parametrize("kind", [Blindness.PENDING, Blindness.FAULT, Blindness.NOT_POLLED])
def test_a_query_without_an_answer_yet_or_our_own_fault_records_nothing_about_the_host(kind):
    decision = decide([case()], Unseen("no answer yet", kind))
    assert facts(decision) == () and decision.actions == ()


def test_an_outage_is_recorded_once_not_once_per_poll():
    decision = decide([case()], Unseen("refused"), host_state=HostState.UNREACHABLE)
    assert facts(decision) == () and decision.actions == ()


def test_a_host_that_answers_again_is_recorded_reachable_once():
    decision = decide([case()], seen(task()), host_state=HostState.UNREACHABLE)
    assert facts(decision) == (RecordHostReachable(name="n1", at=T0),)
    assert decide([case()], seen(task())).records == ()


# --- allocation ---------------------------------------------------------------------------


def test_waiting_cases_get_free_slots_in_arrival_order():
    waiting = [case(f"c{i}", CaseState.WAITING, arrival=10 - i) for i in range(3)]
    decision = decide(waiting, slots=[slot("gpu0"), slot("gpu1")])
    assert decision.actions == (Submit("c2", "n1", "gpu0"), Submit("c1", "n1", "gpu1"))


def test_a_case_waiting_for_its_backoff_is_not_submitted_yet():
    later = case("c1", CaseState.WAITING, not_before=T0 + timedelta(seconds=30))
    assert decide([later]).actions == ()
    assert decide([later], now=T0 + timedelta(seconds=30)).actions == (Submit("c1", "n1", "gpu0"),)


def test_a_slot_running_tasks_we_did_not_submit_is_busy_not_allocated():
    foreign = task(3, label="someone-else", slot="gpu0")
    decision = decide([case("c1", CaseState.WAITING)], seen(foreign))
    assert facts(decision) == (
        MarkSlotBusy(host="n1", slot="gpu0", task_ids=[3],
            reason="the slot runs tasks this daemon did not submit",
        ),
    )  # fmt: skip
    assert decision.actions == (Submit("c1", "n1", "gpu1"),)


def test_a_busy_slot_is_free_again_once_the_other_tasks_are_gone():
    decision = decide([], seen(), slots=[slot("gpu0", SlotState.BUSY), slot("gpu1")])
    assert commands(decision) == ["MarkSlotFree"]


def test_no_slot_is_allocated_on_a_host_we_cannot_see():
    assert decide([case("c1", CaseState.WAITING)], Unseen("refused")).actions == ()


def test_cases_with_work_in_flight_are_left_alone():
    decision = decide([case("c1", CaseState.WAITING)], busy=frozenset({"c1"}))
    assert decision.actions == ()


# --- interrupted submissions ----------------------------------------------------------------


def test_a_submitting_case_adopts_its_task_found_by_label():
    submitting = case(state=CaseState.SUBMITTING)
    decision = decide([submitting], seen(task(12, state="waiting")))
    assert facts(decision) == (
        RecordEnqueued(case_id="c1", attempt=1, task_id=12, created_at=CREATED,
            reason="task found in the queue by its label",
        ),
    )  # fmt: skip


def test_a_missing_task_right_after_a_submission_is_looked_for_again():
    submitting = case(state=CaseState.SUBMITTING)
    settled = {"c1": mono(T0 + timedelta(seconds=5))}
    assert facts(decide([submitting], seen(), settled_at=settled)) == ()


def test_a_task_that_never_reached_the_queue_gives_a_new_uncharged_attempt():
    submitting = case(state=CaseState.SUBMITTING)
    decision = decide([submitting], seen(), settled_at={"c1": mono(T0 - timedelta(seconds=1))})
    assert facts(decision) == (
        AbandonAttempt(case_id="c1", not_before=T0, charged=False,
            reason="the task never reached the queue; submitting a new attempt",
        ),
    )  # fmt: skip


def test_after_a_restart_an_interrupted_submission_waits_for_stragglers():
    submitting = case(state=CaseState.SUBMITTING)
    early = seen(taken_at=STARTED + POLICY.submit_settle - timedelta(seconds=1))
    assert facts(decide([submitting], early)) == ()


# --- monitoring ------------------------------------------------------------------------------


def test_a_queued_case_whose_task_runs_is_recorded_as_started():
    decision = decide([case(state=CaseState.QUEUED)], seen(task(start=CREATED)))
    assert facts(decision) == (RecordStarted(case_id="c1", attempt=1, started_at=CREATED),)


def test_success_records_the_remote_success_and_a_retrieving_case_is_fetched():
    done = task(state="ended", result="succeeded", end=T0)
    decision = decide([case()], seen(done))
    assert facts(decision) == (RecordRemoteSuccess(case_id="c1", attempt=1, ended_at=T0),)
    retrieving = case(state=CaseState.RETRIEVING, task_id=None, task_created_at=None)
    fetch = decide([retrieving], seen(done), slots=[slot("gpu0"), slot("gpu1")])
    assert fetch.actions == (Fetch("c1", 1, "n1", "~/mqi/c1/attempt-1"),)


def test_a_failed_task_fails_the_case_with_its_exit_code_and_log():
    failed = task(state="ended", result="failed", exit_code=2, end=T0)
    decision = decide([case()], seen(failed))
    assert facts(decision) == ()
    assert decision.actions == (
        FailWithLog("c1", 1, "n1", failed, "the simulation exited with code 2"),
    )


def test_a_task_that_failed_to_spawn_fails_the_case():
    spawn = task(state="ended", result="failed_to_start", detail="No such file", end=T0)
    (action,) = decide([case()], seen(spawn)).actions
    assert isinstance(action, FailWithLog) and "No such file" in action.reason


def test_a_task_the_host_stopped_at_its_own_time_limit_fails_the_case_as_a_timeout():
    stopped = task(state="ended", result="timed_out", detail="Slurm TIMEOUT (TimeLimit)", end=T0)
    (action,) = decide([case()], seen(stopped)).actions
    assert isinstance(action, FailWithLog) and action.category is FailureCategory.TIMEOUT
    expected = "the host stopped the task at its time limit (Slurm TIMEOUT (TimeLimit))"
    assert action.reason == expected


def test_a_failure_and_a_success_carry_what_the_host_said_of_them():
    failed = task(state="ended", result="failed", exit_code=2, end=T0,
                  detail="Slurm FAILED (NonZeroExitCode)")  # fmt: skip
    (action,) = decide([case()], seen(failed)).actions
    assert action.reason == "the simulation exited with code 2 (Slurm FAILED (NonZeroExitCode))"
    done = task(state="ended", result="succeeded", end=T0, detail="Slurm COMPLETED")
    (record,) = facts(decide([case()], seen(done)))
    assert isinstance(record, RecordRemoteSuccess) and record.reason == "Slurm COMPLETED"


def test_the_node_a_task_runs_on_is_recorded_with_its_start():
    running = task(node="gpu-node-7")
    (record,) = facts(decide([case(state=CaseState.QUEUED)], seen(running)))
    assert isinstance(record, RecordStarted) and record.node == "gpu-node-7"


def test_a_task_killed_by_others_is_resubmitted_with_backoff():
    killed = task(state="ended", result="killed", end=T0)
    decision = decide([case()], seen(killed))
    (record,) = facts(decision)
    assert isinstance(record, AbandonAttempt)
    assert record.charged is True
    assert record.not_before == T0 + POLICY.retry_backoff


def test_infrastructure_losses_end_the_case_after_max_attempts():
    killed = task(state="ended", result="killed", end=T0)
    decision = decide([case(infra_failures=POLICY.max_attempts - 1)], seen(killed))
    (record,) = facts(decision)
    assert isinstance(record, FailCase)
    assert record.category is FailureCategory.INFRASTRUCTURE


def test_a_missing_task_is_lost_only_after_the_grace_polls():
    memory = Memory()
    for poll in range(1, POLICY.missing_grace):
        decision = decide([case()], seen(), memory=memory)
        assert facts(decision) == (), poll
        memory = decision.memory
    decision = decide([case()], seen(), memory=memory)
    assert commands(decision) == ["AbandonAttempt"]
    assert raised(decision)


def test_an_unknown_poll_does_not_count_towards_the_grace():
    memory = decide([case()], seen()).memory
    memory = decide([case()], Unseen("refused"), memory=memory).memory
    assert memory.missing == {("c1", 1): 1}
    back = decide([case()], seen(task()), memory=memory)
    assert back.memory.missing == {}


def test_a_reused_task_id_is_not_mistaken_for_ours():
    impostor = task(7, label="other-job", created_at=T0)
    assert decide([case()], seen(impostor)).memory.missing == {("c1", 1): 1}


# --- timeouts, kills, cancels ---------------------------------------------------------------


def test_a_case_over_its_timeout_is_killed_and_its_gpu_kept_until_confirmed():
    started = T0 - POLICY.timeout - timedelta(seconds=1)
    running = task(start=started)
    decision = decide([case(state_since=started)], seen(running))
    assert facts(decision) == (
        RequestKill(case_id="c1", cause=KillCause.TIMEOUT,
            reason=f"running longer than {POLICY.timeout}",
        ),
    )  # fmt: skip
    assert decision.actions == (Cancel("n1", running, "c1"),)


def test_a_case_sets_its_own_timeout():
    started = T0 - timedelta(hours=30)
    patient = case(state_since=started, timeout_hours=48.0)
    assert decide([patient], seen(task(start=started))).records == ()


def test_time_a_task_ran_unseen_counts_towards_its_timeout():
    """Seen running only now (after an outage), but started on the node long ago."""
    late = case(state=CaseState.QUEUED)
    decision = decide([late], seen(task(start=T0 - POLICY.timeout - timedelta(minutes=1))))
    assert commands(decision) == ["RecordStarted", "RequestKill"]


def test_a_suspended_task_is_cancelled_like_a_running_one():
    paused = task(state="suspended")
    decision = decide([case(cancel_requested=True)], seen(paused))
    assert decision.actions == (Cancel("n1", paused, "c1"),)  # it holds its GPU: killed


def test_a_slot_paused_on_the_host_is_not_given_new_cases():
    decision = decide([case("c1", CaseState.WAITING)], seen(paused=("gpu0",)))
    assert decision.actions == (Submit("c1", "n1", "gpu1"),)


def test_a_kill_is_resent_at_most_every_interval_and_ends_the_case_when_confirmed():
    killing = case(state=CaseState.KILLING, kill_cause=KillCause.TIMEOUT,
                   state_since=T0 - timedelta(seconds=5))  # fmt: skip
    first = decide([killing], seen(task()))
    assert facts(first) == () and len(first.actions) == 1
    again = decide([killing], seen(task()), memory=first.memory, now=T0 + timedelta(seconds=1))
    assert again.actions == ()
    confirmed = decide([killing], seen(task(state="ended", result="killed", end=T0)))
    assert facts(confirmed) == (
        FailCase(case_id="c1", category=FailureCategory.TIMEOUT,
            reason="the task was killed as asked", quarantine=False, quarantine_task_id=None,
        ),
    )  # fmt: skip


def test_a_kill_that_is_never_confirmed_quarantines_the_slot():
    stuck = case(state=CaseState.KILLING, kill_cause=KillCause.TIMEOUT)
    first = decide([stuck], seen(task()))
    assert facts(first) == ()
    later = T0 + POLICY.kill_confirm_timeout + timedelta(seconds=1)
    decision = decide([stuck], seen(task(), taken_at=later), now=later, memory=first.memory)
    (record,) = facts(decision)
    assert isinstance(record, FailCase) and record.quarantine is True
    assert record.quarantine_task_id == 7
    assert raised(decision)


def test_a_quarantined_slot_is_killed_again_and_lifted_once_its_task_is_gone():
    quarantined = slot("gpu0", SlotState.QUARANTINED, case_id="c1", attempt=1, task_id=7,
                       task_label=task_label("c1", 1), task_created_at=CREATED)  # fmt: skip
    still = decide([], seen(task()), slots=[quarantined, slot("gpu1")])
    assert still.actions == (Cancel("n1", task(), None),)
    assert raised(still)
    later = T0 + POLICY.kill_resend_interval
    again = decide([], seen(task(), taken_at=later), slots=[quarantined, slot("gpu1")],
                   now=later, memory=still.memory, alarms=standing(still))  # fmt: skip
    assert again.actions == (Cancel("n1", task(), None),)
    assert raised(again) == []  # raised once while the slot stays quarantined
    gone = decide([], seen(), slots=[quarantined, slot("gpu1")], alarms=standing(still))
    assert commands(gone) == ["LiftQuarantine"]
    assert cleared(gone) == [standing(still)[0].alarm_id]  # the quarantine is over


def test_a_quarantined_slot_never_kills_another_task_that_got_the_same_id():
    quarantined = slot("gpu0", SlotState.QUARANTINED, case_id="c1", attempt=1, task_id=7,
                       task_label=task_label("c1", 1), task_created_at=CREATED)  # fmt: skip
    stranger = task(7, label="someone-else", created_at=T0)  # ids are reused after clean
    decision = decide([], seen(stranger), slots=[quarantined, slot("gpu1")])
    assert decision.actions == ()
    assert commands(decision) == ["LiftQuarantine"]


def test_an_operator_cancel_kills_the_running_task():
    decision = decide([case(cancel_requested=True)], seen(task()))
    assert facts(decision)[0].cause is KillCause.CANCEL
    assert decision.actions == (Cancel("n1", task(), "c1"),)


def test_a_cancelled_task_still_waiting_in_the_queue_is_removed():
    decision = decide([case(state=CaseState.QUEUED, cancel_requested=True)],
                      seen(task(state="waiting")))  # fmt: skip
    assert decision.actions == (Cancel("n1", task(state="waiting"), "c1"),)


def test_a_slot_holding_our_queued_tasks_is_released_once():
    queued = [case("c1", CaseState.QUEUED), case("c2", CaseState.QUEUED, task_id=8,
                                                 label=task_label("c2", 1))]  # fmt: skip
    tasks = [task(7, state="held"), task(8, label=task_label("c2", 1), state="held")]
    decision = decide(queued, seen(*tasks, paused=("gpu0",)))
    assert decision.actions == (Release("n1", "gpu0"),)


def test_the_same_input_gives_the_same_decision():
    cases = [case("c1"), case("c2", CaseState.WAITING), case("c3", CaseState.SUBMITTING,
                                                             slot="gpu1")]  # fmt: skip
    observation = seen(task(state="ended", result="killed", end=T0))
    assert decide(cases, observation) == decide(cases, observation)


def test_a_task_that_succeeds_while_its_timeout_kill_is_pending_is_a_success():
    killing = case(state=CaseState.KILLING, kill_cause=KillCause.TIMEOUT)
    done = task(state="ended", result="succeeded", end=T0)
    decision = decide([killing], seen(done))
    assert facts(decision) == (RecordRemoteSuccess(case_id="c1", attempt=1, ended_at=T0),)


def test_a_stray_task_with_our_label_keeps_its_gpu_busy_and_raises_an_alarm():
    stray = task(5, label=task_label("c9", 1), created_at=T0)  # an abandoned attempt's task
    decision = decide([], seen(stray))
    assert commands(decision) == ["MarkSlotBusy"]
    (alarm,) = raised(decision)
    assert "belongs to no live attempt" in alarm.message
    assert "cancel it on the host" in alarm.message
