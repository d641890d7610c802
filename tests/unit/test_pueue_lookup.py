"""Finding our task by label (the core's lookup), what a failed pueue call means, and the
rules of pueue's task model and of the core's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mqi_es.adapters.pueue.commands import (
    DAEMON_DOWN_REASON,
    classify,
    is_daemon_down,
)
from mqi_es.adapters.pueue.model import PueueGroup, PueueTask
from mqi_es.core.ids import task_label
from mqi_es.core.outcome import Ok, RemoteFailure, Unknown
from mqi_es.core.remote import (
    Found,
    LookupUnknown,
    NotFound,
    RemoteTask,
    StatusSnapshot,
    find_task_by_label,
)

LABEL = task_label("case-1", 1)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, 10, hour, minute, tzinfo=UTC)


def task(
    task_id: int, *, label: str | None = LABEL, created: datetime | None = None, group: str = "gpu0"
) -> RemoteTask:
    return RemoteTask(
        id=task_id,
        label=label,
        slot=group,
        state="waiting",
        result=None,
        exit_code=None,
        created_at=created,
        start=None,
        end=None,
    )


def snapshot_of(*tasks: RemoteTask) -> StatusSnapshot:
    return StatusSnapshot(tasks={t.id: t for t in tasks}, slots={})


# ------------------------------------------------------------------ label lookup


def test_no_snapshot_means_the_lookup_is_unknown_not_absent() -> None:
    assert find_task_by_label(None, LABEL) == LookupUnknown("no status snapshot of the host")
    assert find_task_by_label(None, LABEL, unknown_reason="host unreachable") == LookupUnknown(
        "host unreachable"
    )


def test_a_label_nobody_carries_is_not_found() -> None:
    snapshot = snapshot_of(task(0, label="other"), task(1, label=None))

    assert find_task_by_label(snapshot, LABEL) == NotFound()
    assert find_task_by_label(snapshot_of(), LABEL) == NotFound()


def test_the_task_with_the_label_is_found() -> None:
    ours = task(3, created=at(9))

    assert find_task_by_label(snapshot_of(task(0, label="x"), ours), LABEL) == Found(ours)


def test_with_several_carriers_the_newest_wins_even_when_its_id_is_lower() -> None:
    # After `pueue clean`, ids are reused: id 2 was created after id 5.
    older, newer = task(5, created=at(10)), task(2, created=at(11))

    assert find_task_by_label(snapshot_of(older, newer), LABEL) == Found(newer)


def test_a_known_creation_time_picks_exactly_that_task() -> None:
    first, copy = task(4, created=at(10)), task(9, created=at(12))

    assert find_task_by_label(snapshot_of(first, copy), LABEL, created_at=at(10)) == Found(first)


def test_a_reused_id_with_our_label_but_another_creation_time_is_not_our_task() -> None:
    stranger = task(4, created=at(13))

    assert find_task_by_label(snapshot_of(stranger), LABEL, created_at=at(10)) == NotFound()


def test_creation_times_match_as_instants_whatever_the_offset() -> None:
    local = task(1, created=datetime(2025, 3, 10, 12, 0, tzinfo=timezone(timedelta(hours=2))))

    assert find_task_by_label(snapshot_of(local), LABEL, created_at=at(10)) == Found(local)


def test_tasks_without_creation_time_lose_to_dated_ones_then_compare_by_id() -> None:
    undated_low, undated_high, dated = task(7), task(8), task(1, created=at(1))

    assert find_task_by_label(snapshot_of(undated_low, dated), LABEL) == Found(dated)
    assert find_task_by_label(snapshot_of(undated_low, undated_high), LABEL) == Found(undated_high)


def test_labels_are_deterministic_per_case_attempt() -> None:
    assert task_label("case-1", 2) == task_label("case-1", 2) == "mqi:case-1:a2"
    assert task_label("case-1", 1) != task_label("case-1", 2)
    assert task_label("case-1", 2) != task_label("case-2", 2)


# ------------------------------------------------------------- outcome meaning

# As pueue prints them: pueue_lib/src/network/socket/unix.rs with the IoPathError format
# "I/O error at path {0:?} while {1}:\n{2}", and the client's own messages.
UNIX_SOCKET_DOWN = (
    "Error: Failed to initialize client.\n\nCaused by:\n"
    '    I/O error at path "/run/user/1000/pueue_clinic.socket" while connecting to daemon.'
    " Did you start it?:\n    No such file or directory (os error 2)\n"
)
TCP_DOWN = "Error: Failed to connect to the daemon on 127.0.0.1:6924. Did you start it?\n"
NEVER_STARTED = "Error: Couldn't find a configuration file. Did you start the daemon yet?\n"


@pytest.mark.parametrize("stderr", [UNIX_SOCKET_DOWN, TCP_DOWN, NEVER_STARTED])
def test_pueue_without_its_daemon_is_a_service_outage_not_a_failed_job(stderr: str) -> None:
    assert is_daemon_down(stderr)
    assert classify(RemoteFailure(1, stderr)) == Unknown(DAEMON_DOWN_REASON)


@pytest.mark.parametrize(
    "stderr", ["", "Error: Group gpu0 already exists\n", "error: unexpected argument '-x'\n"]
)
def test_other_refusals_stay_remote_failures(stderr: str) -> None:
    failure = RemoteFailure(1, stderr)

    assert not is_daemon_down(stderr)
    assert classify(failure) is failure


@pytest.mark.parametrize("exit_status", [130, 137])
def test_pueue_killed_by_a_signal_has_an_unknown_outcome(exit_status: int) -> None:
    outcome = classify(RemoteFailure(exit_status, ""))

    assert isinstance(outcome, Unknown)
    assert str(exit_status) in outcome.reason


def test_a_plain_exit_124_stays_a_remote_failure() -> None:
    """The remote timeout is judged by the SSH layer, which knows whether it elapsed."""
    assert classify(RemoteFailure(124, "")) == RemoteFailure(124, "")


@pytest.mark.parametrize("outcome", [Ok("3\n"), Unknown("host unreachable")])
def test_answers_and_unknowns_pass_through_unchanged(outcome: Ok | Unknown) -> None:
    assert classify(outcome) is outcome


# ------------------------------------------------------------- snapshot rules


def done(result: str, **overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "id": 0,
        "label": None,
        "group": "default",
        "state": "done",
        "result": result,
        "exit_code": None,
        "created_at": at(1),
        "start": at(2),
        "end": at(3),
        "detail": None,
    }
    return {**fields, **overrides}


@pytest.mark.parametrize(
    "fields",
    [
        done("success", state="Done"),
        done("exploded"),
        done("success", state="running"),
        done(None),  # type: ignore[arg-type]
        done("failed"),
        done("success", exit_code=0),
        done("failed_to_spawn"),
        done("killed", detail="why"),
        done("success", start=datetime(2025, 3, 10, 2)),
    ],
)
def test_a_task_pueue_could_never_report_cannot_be_built(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PueueTask(**fields)  # type: ignore[arg-type]


def test_consistent_finished_tasks_can_be_built() -> None:
    failed = PueueTask(**done("failed", exit_code=127))  # type: ignore[arg-type]
    unspawned = PueueTask(**done("failed_to_spawn", detail="no such dir"))  # type: ignore[arg-type]

    assert (failed.exit_code, unspawned.detail) == (127, "no such dir")


def test_an_unknown_group_status_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        PueueGroup("Running", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"state": "queued"},  # pueue's word, not the core's
        {"state": "ended", "result": None},
        {"state": "ended", "result": "failed", "exit_code": None},
        {"state": "ended", "result": "lost", "detail": None},
        {"state": "running", "result": "succeeded"},
    ],
)
def test_a_task_no_host_could_report_cannot_be_built_in_the_cores_terms(
    fields: dict[str, object],
) -> None:
    base = {"id": 1, "label": None, "slot": "s", "state": "waiting", "result": None,
            "exit_code": None, "created_at": at(1), "start": None, "end": None}  # fmt: skip
    with pytest.raises(ValueError):
        RemoteTask(**{**base, **fields})  # type: ignore[arg-type]


def test_tasks_of_a_slot_and_of_a_label_come_in_id_order() -> None:
    snapshot = snapshot_of(task(9, group="gpu1"), task(2, group="gpu1"), task(5, label="x"))

    assert [t.id for t in snapshot.tasks_in_slot("gpu1")] == [2, 9]
    assert [t.id for t in snapshot.tasks_with_label(LABEL)] == [2, 9]
