"""The Case aggregate: which commands make sense in which state, and what they leave."""

from datetime import UTC, datetime

import pytest

from mqi_es.core.errors import InvalidTransition, SlotUnavailable
from mqi_es.core.ids import case_uuid, task_label
from mqi_es.core.states import CaseState, FailureCategory, HostState, KillCause, SlotState
from mqi_es.domain import Case, Host, Slot

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def new_case(case_id: str = "c1") -> Case:
    return Case(case_id=case_id, file_count=3, total_bytes=30, fingerprint="f", actor="daemon")


def running_case() -> Case:
    case = new_case()
    case.start_submission(host="n1", slot="gpu0", remote_base_dir="~/mqi", actor="daemon")
    case.record_enqueued(attempt=1, task_id=7, created_at=NOW, actor="daemon")
    case.record_started(attempt=1, started_at=NOW, actor="daemon")
    return case


def test_a_case_id_always_maps_to_the_same_aggregate():
    assert new_case().id == case_uuid("c1") == new_case().id
    assert case_uuid("c1") != case_uuid("c2")


def test_every_event_carries_actor_reason_and_utc_time():
    case = running_case()
    case.fail(category=FailureCategory.CASE_FAILURE, actor="daemon", reason="exit 2", exit_code=2)
    events = case.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Detected", "SubmissionStarted", "TaskEnqueued", "TaskStarted", "Failed",
    ]  # fmt: skip
    for e in events:
        assert e.actor == "daemon"
        assert e.timestamp.utcoffset().total_seconds() == 0
    assert events[-1].reason == "exit 2"


def test_submission_numbers_attempts_and_gives_each_a_label_and_folder():
    case = new_case()
    case.start_submission(host="n1", slot="gpu0", remote_base_dir="~/mqi", actor="daemon")
    assert (case.attempt, case.label, case.remote_dir) == (
        1, task_label("c1", 1), "~/mqi/c1/attempt-1",
    )  # fmt: skip
    case.abandon_attempt(not_before=NOW, charged=True, actor="daemon", reason="lost")
    case.start_submission(host="n1", slot="gpu1", remote_base_dir="~/mqi", actor="daemon")
    assert (case.attempt, case.label) == (2, task_label("c1", 2))


def test_a_terminal_case_keeps_no_gpu_or_task():
    case = running_case()
    case.fail(category=FailureCategory.TIMEOUT, actor="daemon", reason="24 h")
    assert case.state is CaseState.FAILED
    assert (case.host, case.slot, case.task_id, case.label) == (None, None, None, None)


def test_results_are_recorded_only_for_the_current_attempt():
    case = running_case()
    case.record_remote_success(attempt=1, ended_at=NOW, actor="daemon")
    with pytest.raises(InvalidTransition, match="attempt 1, not 2"):
        case.complete(
            attempt=2,
            files=1,
            bytes=1,
            results_dir="/r",
            digests=[],
            manifest_sha256="",
            actor="daemon",
        )
    case.complete(
        attempt=1,
        files=1,
        bytes=1,
        results_dir="/r",
        digests=[],
        manifest_sha256="",
        actor="daemon",
    )
    assert case.state is CaseState.COMPLETED


@pytest.mark.parametrize(
    ("prepare", "command"),
    [
        (new_case, lambda c: c.record_started(attempt=1, started_at=NOW, actor="d")),
        (new_case, lambda c: c.request_kill(cause=KillCause.TIMEOUT, actor="d", reason="")),
        (new_case, lambda c: c.retry(actor="d", reason="")),
        (running_case, lambda c: c.retry(actor="d", reason="")),
        (running_case, lambda c: c.restabilize(
            file_count=1, total_bytes=1, fingerprint="x", actor="d", reason="")),
        (running_case, lambda c: c.start_submission(
            host="n1", slot="gpu0", remote_base_dir="~", actor="d")),
        (new_case, lambda c: c.record_progress(attempt=1, done=1, total=9, actor="d")),
        (running_case, lambda c: c.record_progress(attempt=2, done=1, total=9, actor="d")),
        (running_case, lambda c: c.record_progress(attempt=1, done=10, total=9, actor="d")),
        (running_case, lambda c: c.record_progress(attempt=1, done=0, total=0, actor="d")),
    ],
)  # fmt: skip
def test_commands_that_make_no_sense_are_refused_and_record_nothing(prepare, command):
    case = prepare()
    before = len(case.collect_events())
    with pytest.raises(InvalidTransition):
        command(case)
    assert case.collect_events() == [] and before > 0


def test_a_finished_case_cannot_be_cancelled_or_failed_again():
    case = running_case()
    case.fail(category=FailureCategory.CASE_FAILURE, actor="daemon", reason="exit 1")
    with pytest.raises(InvalidTransition, match="already failed"):
        case.request_cancel(actor="user:alice", reason="")
    with pytest.raises(InvalidTransition):
        case.fail(category=FailureCategory.TIMEOUT, actor="daemon", reason="again")


def test_retry_gives_a_failed_case_a_new_attempt_with_a_fresh_budget():
    case = running_case()
    case.abandon_attempt(
        not_before=None, charged=True, actor="daemon", reason="killed by a restart"
    )
    case.start_submission(host="n1", slot="gpu0", remote_base_dir="~", actor="daemon")
    case.fail(category=FailureCategory.INFRASTRUCTURE, actor="daemon", reason="max attempts")
    assert case.infra_failures == 2
    case.retry(actor="user:alice", reason="node fixed")
    assert (case.state, case.infra_failures, case.failure) == (CaseState.WAITING, 0, None)
    case.start_submission(host="n1", slot="gpu0", remote_base_dir="~", actor="daemon")
    assert case.attempt == 3


def test_naive_times_are_refused():
    case = new_case()
    case.start_submission(host="n1", slot="gpu0", remote_base_dir="~", actor="daemon")
    with pytest.raises(ValueError, match="timezone-aware"):
        case.record_enqueued(attempt=1, task_id=1, created_at=datetime(2026, 1, 1), actor="d")


def test_a_slot_is_never_held_by_two_cases():
    slot = Slot(host="n1", name="gpu0", actor="daemon")
    slot.allocate(case_id="c1", attempt=1, actor="daemon")
    with pytest.raises(SlotUnavailable, match="held by case c1"):
        slot.allocate(case_id="c2", attempt=1, actor="daemon")
    with pytest.raises(InvalidTransition):
        slot.release(case_id="c2", attempt=1, actor="daemon", reason="wrong case")
    slot.release(case_id="c1", attempt=1, actor="daemon", reason="done")
    slot.allocate(case_id="c2", attempt=1, actor="daemon")
    assert slot.case_id == "c2"


def test_a_quarantined_slot_is_not_allocated_until_lifted():
    slot = Slot(host="n1", name="gpu0", actor="daemon")
    slot.allocate(case_id="c1", attempt=1, actor="daemon")
    slot.quarantine(task_id=7, task_label="mqi:c1:a1", task_created_at=NOW, actor="daemon",
                    reason="kill not confirmed")  # fmt: skip
    assert slot.is_held_by("c1", 1) and slot.state is SlotState.QUARANTINED
    with pytest.raises(SlotUnavailable, match="quarantined"):
        slot.allocate(case_id="c2", attempt=1, actor="daemon")
    slot.lift_quarantine(actor="daemon", reason="task seen killed")
    assert slot.state is SlotState.FREE and slot.case_id is None


def test_a_host_outage_is_recorded_once_at_each_transition():
    host = Host(name="n1", address="127.0.0.1", actor="daemon")
    assert host.record_reachable(at=NOW, actor="daemon")
    assert not host.record_reachable(at=NOW, actor="daemon")
    down = HostState.UNREACHABLE
    assert host.record_unavailable(state=down, since=NOW, actor="daemon", reason="refused")
    assert not host.record_unavailable(state=down, since=NOW, actor="daemon", reason="refused")
    later = NOW.replace(minute=5)
    assert host.record_reachable(at=later, actor="daemon")
    events = host.collect_events()
    assert [type(e).__name__ for e in events] == [
        "Registered", "BecameReachable", "BecameUnavailable", "BecameReachable",
    ]  # fmt: skip
    assert events[-1].outage_seconds == 300


def test_what_an_outage_shows_is_recorded_at_each_change_and_the_outage_keeps_its_start():
    host = Host(name="n1", address="127.0.0.1", actor="daemon")
    host.record_unavailable(state=HostState.UNREACHABLE, since=NOW, actor="d", reason="refused")
    later = NOW.replace(minute=2)
    assert host.record_unavailable(
        state=HostState.QUEUE_DOWN, since=later, actor="d", reason="pueue daemon not running"
    )
    assert host.state is HostState.QUEUE_DOWN and host.unreachable_since == NOW
    assert host.record_reachable(at=NOW.replace(minute=10), actor="d")
    assert host.collect_events()[-1].outage_seconds == 600
    with pytest.raises(ValueError, match="not an unavailable state"):
        host.record_unavailable(state=HostState.REACHABLE, since=NOW, actor="d", reason="")


def test_the_progress_of_the_running_attempt_is_recorded():
    case = running_case()
    case.record_progress(attempt=1, done=5, total=18, actor="daemon")
    (event,) = case.collect_events()[-1:]
    assert (type(event).__name__, event.attempt, event.done, event.total) == (
        "ProgressReported",
        1,
        5,
        18,
    )
