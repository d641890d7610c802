"""pueue's states in the core's neutral terms, read from real pueue 3.1.2 output."""

from functools import cache

import pytest

from mqi_es.adapters.pueue.model import to_snapshot
from mqi_es.adapters.pueue.parse import parse_status
from mqi_es.core.remote import RemoteSlot, StatusSnapshot
from tests.samples import PUEUE_SAMPLES


@cache
def real(name: str) -> StatusSnapshot:
    return to_snapshot(parse_status((PUEUE_SAMPLES / "real-3.1.2" / name).read_bytes()))


def states(snapshot: StatusSnapshot) -> dict[int, tuple]:
    return {i: (t.slot, t.state, t.result, t.exit_code) for i, t in snapshot.tasks.items()}


def test_after_a_daemon_restart_the_queued_task_is_held_in_a_closed_slot():
    snapshot = real("status_restart2_after.json")
    assert states(snapshot) == {
        0: ("gpu0", "ended", "killed", None),
        1: ("gpu0", "held", None, None),  # its group is paused: `pueue start -g gpu0`
    }
    assert snapshot.slots == {"default": RemoteSlot(open=True), "gpu0": RemoteSlot(open=False)}


def test_a_paused_task_is_suspended_and_the_next_one_waits():
    assert states(real("status_paused.json")) == {
        0: ("gpu0", "ended", "failed", 3),
        1: ("gpu0", "suspended", None, None),
        2: ("gpu0", "waiting", None, None),
    }


@pytest.mark.parametrize(
    ("name", "task", "expected"),
    [
        ("status_dependency_failed.json", 6, ("ended", "lost", "a task it depends on failed")),
        ("status_dependency_failed.json", 3, ("ended", "succeeded", None)),
        ("status_stashed.json", 4, ("waiting", None, None)),  # not ours to enqueue
        ("status_locked.json", 5, ("waiting", None, None)),  # being edited
        ("status_running.json", 0, ("running", None, None)),
    ],
)
def test_each_pueue_state_has_its_neutral_meaning(name: str, task: int, expected: tuple):
    found = real(name).tasks[task]
    assert (found.state, found.result, found.detail) == expected


def test_a_task_that_failed_to_spawn_failed_to_start_with_pueues_words():
    failed = real("status_failed_to_spawn.json").tasks[4]
    assert (failed.state, failed.result) == ("ended", "failed_to_start")
    assert failed.detail.startswith("Failed to spawn child 4 with err: Os { code: 2")


def test_a_killed_group_is_a_closed_slot():
    snapshot = real("status_killed_group.json")
    assert snapshot.slots["gpu0"] == RemoteSlot(open=False)
    assert [t.result for t in snapshot.tasks_in_slot("gpu0")] == ["failed", "killed", "killed"]
