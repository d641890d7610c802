"""Housekeeping as the core decides it: only our ended tasks whose outcomes are recorded,
only registered cases, only folders of ended cases past their retention, only on hosts seen
this cycle, never in a cycle whose timing cannot be trusted."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from mqi_es.core.actions import Memory, RemoveFolder, RemoveTasks
from mqi_es.core.ids import label_attempt, task_label
from mqi_es.core.policy import Housekeeping
from mqi_es.core.remote import Unseen
from mqi_es.core.states import CaseState
from mqi_es.core.views import Leftover
from tests.unit.worlds import POLICY, T0, case, decide, mono, seen, task

HOUR = timedelta(hours=1)


def removals(decision) -> list:
    return [a for a in decision.actions if isinstance(a, RemoveTasks | RemoveFolder)]


def ended(task_id: int, label: str) -> object:
    return task(task_id, label=label, state="ended", result="succeeded")


def test_ended_tasks_of_registered_cases_no_live_attempt_holds_are_removed_in_one_action():
    live = case("c1", CaseState.RUNNING, attempt=2, label=task_label("c1", 2), task_id=8)
    running = task(8, label=task_label("c1", 2))  # kept: it runs
    finished = ended(3, task_label("c2", 1))  # c2 completed: its task goes
    earlier = ended(4, task_label("c1", 1))  # c1's first attempt, lost: goes
    older = ended(5, "mqi:c3:a1")  # c3 is not registered here (another daemon's): kept
    foreign = ended(6, "someone-else")  # not ours at all
    decision = decide(
        [live], seen(running, finished, earlier, older, foreign),
        registered=frozenset({"c1", "c2"}),
    )  # fmt: skip
    (action,) = removals(decision)
    assert isinstance(action, RemoveTasks) and action.host == "n1"
    assert [t.id for t in action.tasks] == [3, 4]


def test_the_task_of_a_live_attempt_is_never_removed_even_once_it_ended():
    running = case("c1", CaseState.RUNNING)
    done = ended(7, task_label("c1", 1))  # its outcome is not recorded yet
    decision = decide([running], seen(done), registered=frozenset({"c1"}))
    assert [a for a in removals(decision) if isinstance(a, RemoveTasks)] == []


def test_nothing_is_removed_when_remove_finished_tasks_is_off_or_the_host_is_not_seen():
    off = dataclasses.replace(POLICY, housekeeping=Housekeeping(remove_finished_tasks=False))
    finished = ended(3, task_label("c2", 1))
    assert removals(decide([], seen(finished), registered={"c2"}, policy=off)) == []
    assert removals(decide([], Unseen("refused"), registered={"c2"})) == []


def leftover(case_id="c2", *, ended_ago=timedelta(hours=80), failed=False) -> Leftover:
    return Leftover(case_id=case_id, host="n1", folder=f"~/mqi/{case_id}",
                    ended_at=T0 - ended_ago, failed=failed)  # fmt: skip


def test_a_folder_goes_once_its_retention_is_over_and_a_failed_case_is_kept_longer():
    found = [
        leftover("c2", ended_ago=72 * HOUR),  # completed 72 h ago: goes (retention 72 h)
        leftover("c3", ended_ago=71 * HOUR),  # completed 71 h ago: kept
        leftover("c4", ended_ago=100 * HOUR, failed=True),  # failed: kept 336 h
        leftover("c5", ended_ago=336 * HOUR, failed=True),  # failed 336 h ago: goes
    ]
    decision = decide([], seen(), leftovers=found)
    assert removals(decision) == [
        RemoveFolder("c2", "n1", "~/mqi/c2"), RemoveFolder("c5", "n1", "~/mqi/c5"),
    ]  # fmt: skip


def test_a_folder_waits_while_its_host_is_unseen_and_in_a_cycle_whose_clock_jumped():
    assert removals(decide([], Unseen("refused"), leftovers=[leftover()])) == []
    before = decide([], seen(), now=T0 - timedelta(minutes=1), leftovers=[])
    jumped = decide([], seen(), memory=before.memory, at=mono(T0) - 3600, leftovers=[leftover()])
    assert removals(jumped) == []  # the wall clock ran an hour ahead of the monotonic one


def test_retention_zero_removes_at_once():
    at_once = dataclasses.replace(POLICY, housekeeping=Housekeeping(retention=timedelta(0)))
    just = leftover(ended_ago=timedelta(0))
    assert removals(decide([], seen(), leftovers=[just], policy=at_once, memory=Memory())) == [
        RemoveFolder("c2", "n1", "~/mqi/c2")
    ]


@given(case_id=st.text(min_size=1, max_size=40), attempt=st.integers(1, 10**6))
def test_every_label_we_make_names_its_case_and_attempt_again(case_id, attempt):
    assert label_attempt(task_label(case_id, attempt)) == (case_id, attempt)


def test_labels_that_are_not_ours_name_nothing():
    for label in (None, "", "mqi:", "mqi:c1", "mqi:c1:a", "mqi:c1:a01", "mqi::a1", "x:c1:a1"):
        assert label_attempt(label) is None
