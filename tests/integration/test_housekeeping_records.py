"""Housekeeping's facts on a real SQLite log and views: each removal is an event of its
case (in `mqi history`), refused while the case may still need what it names; the views
list the folders ended cases left on the nodes, and forget each once it is removed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mqi_es.core.errors import InvalidTransition
from mqi_es.core.states import FailureCategory
from projections import runner
from projections.history import case_history
from tests.integration.test_projections import NOW, World, run_cases


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


def leftovers(world: World, before=None):
    world.catch_up()
    with world.views().snapshot() as views:
        return views.leftovers(before or NOW + timedelta(days=365))


def test_an_ended_case_leaves_its_folder_listed_until_it_is_removed(world):
    run_cases(world.ledger, 1)  # c0 failed, its attempt 1 ran on n1 under ~
    (left,) = leftovers(world)
    assert (left.case_id, left.host, left.folder, left.failed) == ("c0", "n1", "~/c0", True)
    assert leftovers(world, left.ended_at - timedelta(seconds=1)) == []  # not ended by then
    world.ledger.record_folder_removed("c0", host="n1", folder="~/c0", actor="daemon",
                                       reason="its retention is over")  # fmt: skip
    assert leftovers(world) == []
    runner.replay(world.link, world.feed)
    assert leftovers(world) == []


def test_a_folder_is_listed_once_per_host_whatever_the_number_of_attempts_there(world):
    ledger = world.ledger
    run_cases(ledger, 1)
    ledger.retry_case("c0", actor="user:a", reason="again")
    ledger.start_submission("c0", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    ledger.fail_case("c0", category=FailureCategory.CASE_FAILURE, actor="d", reason="exit 2")
    assert [(x.host, x.folder) for x in leftovers(world)] == [("n1", "~/c0")]


def test_an_active_case_lists_no_folder_and_its_folder_cannot_be_removed(world):
    ledger = world.ledger
    ledger.register_host("n1", "127.0.0.1", actor="daemon")
    ledger.register_slot("n1", "gpu0", actor="daemon")
    ledger.detect_case("c1", file_count=1, total_bytes=2, fingerprint="f", actor="daemon")
    ledger.start_submission("c1", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    assert leftovers(world) == []
    with pytest.raises(InvalidTransition, match="it may need"):
        ledger.record_folder_removed("c1", host="n1", folder="~/c1", actor="d", reason="")
    ledger.record_enqueued("c1", attempt=1, task_id=4, created_at=NOW, actor="daemon")
    with pytest.raises(InvalidTransition, match="still needs its task 4"):
        ledger.record_task_removed("c1", attempt=1, task_id=4, actor="d", reason="")


def test_only_a_folder_the_case_recorded_can_be_recorded_removed(world):
    run_cases(world.ledger, 1)
    with pytest.raises(InvalidTransition, match="is not a folder of case c0"):
        world.ledger.record_folder_removed("c0", host="n1", folder="~/other", actor="d",
                                           reason="")  # fmt: skip
    with pytest.raises(InvalidTransition):
        world.ledger.record_folder_removed("c0", host="n2", folder="~/c0", actor="d", reason="")


def test_removals_are_in_the_case_history_and_change_nothing_else_it_shows(world):
    run_cases(world.ledger, 1)
    world.catch_up()
    with world.views().snapshot() as views:
        before = views.case("c0")
    world.ledger.record_task_removed("c0", attempt=1, task_id=0, actor="daemon",
                                     reason="its outcome is recorded")  # fmt: skip
    world.ledger.record_folder_removed("c0", host="n1", folder="~/c0", actor="daemon",
                                       reason="its retention is over")  # fmt: skip
    world.catch_up()
    with world.views().snapshot() as views:
        assert views.case("c0") == before  # its state, reason and times are the failure's
        trail = case_history(world.feed, views, "c0")
    assert [(e.event, e.details, e.reason) for e in trail[-2:]] == [
        ("TaskRemoved", {"attempt": 1, "task_id": 0}, "its outcome is recorded"),
        ("FolderRemoved", {"host": "n1", "folder": "~/c0"}, "its retention is over"),
    ]


def instructions(views, read) -> int:
    """How many SQLite virtual-machine instructions ``read`` executes."""
    executed = []
    views._c.set_progress_handler(lambda: executed.append(1), 1)  # None: go on
    try:
        read()
    finally:
        views._c.set_progress_handler(None, 1)
    return len(executed)


def test_the_leftovers_query_never_walks_the_cases_whose_folders_are_gone(tmp_path):
    """Read every cycle: its cost must not grow with the history of cleaned cases (it did
    when SQLite chose the index of states and walked every ended case)."""
    steps = []
    for count in (2, 200):
        world = World(tmp_path / str(count))
        run_cases(world.ledger, count)
        for i in range(count):
            world.ledger.record_folder_removed(f"c{i}", host="n1", folder=f"~/c{i}",
                                               actor="daemon", reason="retention")  # fmt: skip
        world.catch_up()
        with world.views().snapshot() as views:
            assert views.leftovers(NOW + timedelta(days=365)) == []
            steps.append(instructions(views, lambda: views.leftovers(NOW + timedelta(days=365))))
    assert steps[0] == steps[1] > 0
