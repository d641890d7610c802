"""How far a run got: read from MOQUI's output, read at a bounded rate, recorded each tenth."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqi_es.core.actions import ReadProgress, RunOf
from mqi_es.core.commands import RecordProgress
from mqi_es.core.outcome import RemoteFailure, Unknown
from mqi_es.core.reactions import after_progress
from mqi_es.core.remote import Blindness, LogTails, Unseen
from mqi_es.core.run_progress import (
    MOQUI_PATTERN,
    RunProgress,
    pattern_problem,
    read_progress,
    worth_recording,
)
from mqi_es.core.states import CaseState
from tests.unit.worlds import POLICY, T0, case, decide, seen, task

READING = dataclasses.replace(POLICY, progress_interval=timedelta(seconds=30))

MOQUI = re.compile(MOQUI_PATTERN)
LOG = (Path(__file__).parents[1] / "data" / "moqui" / "tps_env-two-beams.log").read_text()


def tail(lines: int) -> str:
    """What ``pueue log --lines`` shows of the log when the run has printed ``lines``."""
    return "\n".join(LOG.splitlines()[:lines][-20:])


def test_moquis_own_lines_tell_the_batch_of_the_beam_it_is_on():
    first_batch = LOG.splitlines().index("Generating particles for (1 of 18 batches) in CPU ..")
    assert read_progress(tail(first_batch), MOQUI) is None  # still reading the plan
    assert read_progress(tail(first_batch + 1), MOQUI) == RunProgress(1, 18)
    assert read_progress(tail(first_batch + 4 * 9 + 1), MOQUI) == RunProgress(10, 18)
    assert read_progress(LOG, MOQUI) == RunProgress(12, 12)  # the second beam, at its end
    assert str(RunProgress(10, 18)) == "10/18 (55%)"


@pytest.mark.parametrize(
    "text",
    [
        "Generating particles for (0 of 0 batches) in CPU ..",  # no run has no batches
        "Generating particles for (19 of 18 batches) in CPU ..",
        "Generating particles for (1 of 99999999999999999999 batches)",
        "Generating particles... (1 of 18 batches)",  # upstream MOQUI's line, without counts
        "",
    ],
)
def test_lines_that_make_no_sense_tell_nothing(text):
    assert read_progress(text, MOQUI) is None


def test_a_permitted_pattern_with_optional_groups_or_other_digits_tells_nothing():
    optional = re.compile(r"step (?P<done>[0-9]+)?/(?P<total>\d+)")
    assert read_progress("step /10", optional) is None
    assert read_progress("step 3/\u00b2", re.compile(r"step (?P<done>\d+)/(?P<total>\S+)")) is None
    assert read_progress("step 3/10", optional) == RunProgress(3, 10)


def test_the_last_line_that_makes_sense_wins():
    text = "Generating particles for (3 of 18 batches)\nGenerating particles for (99 of 18 batches)"
    assert read_progress(text, MOQUI) == RunProgress(3, 18)


def test_a_pattern_must_compile_and_name_done_and_total():
    assert pattern_problem(MOQUI_PATTERN) is None
    assert pattern_problem(r"step (?P<done>\d+)/(?P<total>\d+)") is None
    assert "regular expression" in (pattern_problem("(") or "")
    assert "named groups" in (pattern_problem(r"(\d+) of (\d+)") or "")


@given(st.integers(0, 500), st.integers(1, 500), st.integers(0, 500), st.integers(1, 500))
def test_at_most_one_record_per_tenth_of_a_run(d1, t1, d2, t2):
    if d1 > t1 or d2 > t2:
        return
    before, now = RunProgress(d1, t1), RunProgress(d2, t2)
    assert worth_recording(None, now)
    assert worth_recording(before, now) == ((before.tenth, t1) != (now.tenth, t2))
    assert not worth_recording(now, now)


def test_a_whole_run_read_line_by_line_is_recorded_at_most_eleven_times_per_beam():
    recorded, records = None, []
    for lines in range(1, len(LOG.splitlines()) + 1):
        seen_now = read_progress(tail(lines), MOQUI)
        if seen_now is not None and worth_recording(recorded, seen_now):
            records.append(seen_now)
            recorded = seen_now
    assert len(records) <= 2 * 11
    assert [r.tenth for r in records if r.total == 18] == sorted({r.tenth for r in records
                                                                 if r.total == 18})  # fmt: skip
    assert records[-1] == RunProgress(12, 12)


# --- when it is read: one command per host per interval ------------------------------


def reads(decision) -> list[ReadProgress]:
    return [a for a in decision.actions if isinstance(a, ReadProgress)]


def read_decide(cases, observation, **kwargs):
    return decide(cases, observation, policy=kwargs.pop("policy", READING), **kwargs)


def test_the_running_tasks_of_a_host_are_read_together_every_interval():
    running = [case("c1"), case("c2", task_id=8, slot="gpu1")]
    observation = seen(task(7), task(8, label=running[1].label, slot="gpu1"))
    first = read_decide(running, observation)
    (read,) = reads(first)
    assert read.host == "n1" and [r.case_id for r in read.runs] == ["c1", "c2"]
    assert [r.task.id for r in read.runs] == [7, 8]
    soon = read_decide(running, observation, memory=first.memory, now=T0 + timedelta(seconds=29))
    assert reads(soon) == []  # not before the interval is over
    later = read_decide(running, observation, memory=first.memory, now=T0 + timedelta(seconds=30))
    assert len(reads(later)) == 1


def test_no_read_for_tasks_that_do_not_run_a_cancelled_case_or_a_host_not_seen():
    assert (
        reads(read_decide([case("c1", state=CaseState.QUEUED)], seen(task(7, state="waiting"))))
        == []
    )
    assert reads(read_decide([case("c1", cancel_requested=True)], seen(task(7)))) == []
    assert reads(read_decide([case("c1")], seen(task(7, label="someone-else")))) == []
    assert reads(read_decide([case("c1")], Unseen("timed out", Blindness.UNREACHABLE))) == []
    never = dataclasses.replace(POLICY, progress_interval=None)
    assert reads(read_decide([case("c1")], seen(task(7)), policy=never)) == []


# --- what a read records ---------------------------------------------------------------


def test_a_read_shows_every_run_and_records_only_those_in_a_new_tenth():
    runs = (
        RunOf("c1", 1, task(7), recorded=RunProgress(2, 18)),  # 11%, now 16%: same tenth
        RunOf("c2", 1, task(8), recorded=RunProgress(2, 18)),  # now 55%: a new tenth
        RunOf("c3", 2, task(9), recorded=None),  # no line yet
    )
    tails = LogTails({
        7: "Generating particles for (3 of 18 batches) in CPU ..",
        8: "Generating particles for (10 of 18 batches) in CPU ..",
        9: "Initialization for geometry done 1523.118000 ms",
    })  # fmt: skip
    latest, records = after_progress(ReadProgress("n1", runs), tails, MOQUI)
    assert latest == {"c1": RunProgress(3, 18), "c2": RunProgress(10, 18)}
    assert records == [RecordProgress(case_id="c2", attempt=1, done=10, total=18)]


@pytest.mark.parametrize("outcome", [Unknown("timed out"), RemoteFailure(1, "no such task")])
def test_a_host_that_cannot_tell_changes_nothing(outcome):
    read = ReadProgress("n1", (RunOf("c1", 1, task(7), recorded=None),))
    assert after_progress(read, outcome, MOQUI) == ({}, [])
