"""Reading pueue's output: every real and constructed sample, malformed input, fuzzing.

The samples live in ``tests/data/pueue-samples`` (provenance in its README): they are the
only ground truth. ``real-3.1.2/`` is what a real, running pueue 3.1.2 printed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqi_es.adapters.pueue.model import PueueGroup, PueueState, to_snapshot
from mqi_es.adapters.pueue.parse import (
    PueueOutputError,
    parse_add_output,
    parse_log,
    parse_status,
    parse_task_status,
)
from mqi_es.core.remote import Found, find_task_by_label
from tests.samples import PUEUE_SAMPLES

PLUS_2 = timezone(timedelta(hours=2))
PLUS_8 = timezone(timedelta(hours=8))


@cache
def samples_dir() -> Path:
    path = PUEUE_SAMPLES
    provenance = [path / "README.md", path / "real" / "SOURCES.md", path / V312 / "README.md"]
    if not all(file.is_file() for file in provenance):
        pytest.fail(f"pueue samples or their provenance files are missing from {path}")
    return path


@cache
def sample(name: str) -> bytes:
    return (samples_dir() / name).read_bytes()


R = "real/"
V312 = "real-3.1.2/"
RAYCAST = R + "daviddwlee84__Pueue-Raycast-Extension__"
WRAPPER = R + "daviddwlee84__PueueWrapper__"

STATUS_ALL_STATES = [
    "v3_status_all_states.json",
    "v3_status_all_states.pretty.json",
    "v4_status_all_states.json",
    "v4_status_all_states.pretty.json",
]
STATE_V2 = [
    "v3era_fixture_v2.0.0_state.json",
    R + "Nukesor__pueue__v2.0.0_state_fixture_at_v3.4.1.json",
]
STATE_V4 = [
    "v4_fixture_v4.0.0_state.json",
    R + "michaelfortunato__pueue_webui__v4.0.0_state_vendored_upstream.json",
]
EMPTY_QUEUE = RAYCAST + "status_json_empty_queue.json"
TRUNCATED = RAYCAST + "status_json_linux_remote_TRUNCATED_preview.txt"
GROUPS_V3 = ["v3_group_json.json", "v3_group_json.pretty.json"]
GROUPS_V4 = ["v4_group_json.json", "v4_group_json.pretty.json"]
LOGS_V3 = ["v3_log_json.json", "v3_log_json.pretty.json"]
LOGS_V4 = ["v4_log_json.json", "v4_log_json.pretty.json"]
STATUS_OBJECTS = RAYCAST + "task_status_objects_macos_v4.0.4_pydumps.jsonl"
STATUS_OBJECT_NANOS = RAYCAST + "task_status_object_linux_remote_nanosec.json"
ADD_OUTPUTS = {  # none of them was run with --print-task-id
    R + "Nukesor__pueue__issue223_add_stdout.txt",
    R + "Nukesor__pueue__issue508_group_add_and_add_stdout.txt",
    RAYCAST + "add_and_group_add_stdout.txt",
    WRAPPER + "add_stdout_id68.txt",
}
REAL_GROUPS = {
    RAYCAST + "group_json_default.json": {"default": PueueGroup("running", 1)},
    WRAPPER + "group_json_default_only.json": {"default": PueueGroup("running", 1)},
    RAYCAST + "groups_map_linux_remote_3groups_jsstringify.json": {
        "default": PueueGroup("running", 1),
        "ollama": PueueGroup("running", 1),
        "wf": PueueGroup("running", 1),
    },
    WRAPPER + "group_json_two_groups_parallel1.json": {
        "default": PueueGroup("running", 1),
        "test-group": PueueGroup("running", 1),
    },
    WRAPPER + "group_json_two_groups_parallel2.json": {
        "default": PueueGroup("running", 1),
        "test-group": PueueGroup("running", 2),
    },
}
LOG_STASHED = RAYCAST + "log_json_stashed_task_jsontool.json"
LOG_UNKNOWN_ID = RAYCAST + "log_json_unknown_id_empty.json"
AI_REPRODUCED = WRAPPER + "log_json_excerpt_ai_reproduced.txt"

# real-3.1.2/: what each capture shows, as its README describes the step before it.
# id -> (label, group, state, result, exit code), then the group statuses.
F3 = ("mqi-test-1", "gpu0", "done", "failed", 3)
KILLED_GPU0 = (None, "gpu0", "done", "killed", None)
SUCCESS = (None, "default", "done", "success", None)
SPAWN_FAILED = (None, "default", "done", "failed_to_spawn", None)
STASHED = (None, "default", "stashed", None, None)
RUNNING, PAUSED = PueueGroup("running", 1), PueueGroup("paused", 1)
BOTH_RUNNING = {"default": RUNNING, "gpu0": RUNNING}
FIRST_FOUR = {0: F3, 1: KILLED_GPU0, 2: KILLED_GPU0, 3: SUCCESS}
UP_TO_SPAWN_FAILURE = {**FIRST_FOUR, 4: SPAWN_FAILED, 5: STASHED}
DEPENDENCY_FAILED = (None, "default", "done", "dependency_failed", None)
STATUS_312: dict[str, tuple[dict[int, tuple[Any, ...]], dict[str, PueueGroup]]] = {
    "status_running.json": ({0: ("mqi-test-1", "gpu0", "running", None, None)}, BOTH_RUNNING),
    "status_done_failed3.json": ({0: F3}, BOTH_RUNNING),
    "status_queued.json": (
        {0: F3, 1: (None, "gpu0", "running", None, None), 2: (None, "gpu0", "queued", None, None)},
        BOTH_RUNNING,
    ),
    "status_paused.json": (
        {0: F3, 1: (None, "gpu0", "paused", None, None), 2: (None, "gpu0", "queued", None, None)},
        BOTH_RUNNING,
    ),
    "status_killed.json": (
        {0: F3, 1: KILLED_GPU0, 2: (None, "gpu0", "running", None, None)},
        BOTH_RUNNING,
    ),
    "status_killed_group.json": (
        {0: F3, 1: KILLED_GPU0, 2: KILLED_GPU0},
        {"default": RUNNING, "gpu0": PAUSED},
    ),
    "status_group_resumed.json": ({0: F3, 1: KILLED_GPU0, 2: KILLED_GPU0}, BOTH_RUNNING),
    "status_done_success.json": (FIRST_FOUR, BOTH_RUNNING),
    "status_stashed.json": ({**FIRST_FOUR, 4: STASHED}, BOTH_RUNNING),
    "status_stashed_delayed.json": ({**FIRST_FOUR, 4: STASHED, 5: STASHED}, BOTH_RUNNING),
    "status_failed_to_spawn.json": (UP_TO_SPAWN_FAILURE, BOTH_RUNNING),
    "status_locked.json": (
        {**UP_TO_SPAWN_FAILURE, 5: (None, "default", "locked", None, None)},
        BOTH_RUNNING,
    ),
    "status_after_edit.json": (UP_TO_SPAWN_FAILURE, BOTH_RUNNING),
    "status_dependency_failed.json": (
        {**UP_TO_SPAWN_FAILURE, 6: DEPENDENCY_FAILED},
        BOTH_RUNNING,
    ),
    "status_after_plain_kill.json": (
        {
            **UP_TO_SPAWN_FAILURE,
            6: DEPENDENCY_FAILED,
            7: SUCCESS,
            8: (None, "default", "done", "killed", None),
        },
        {"default": PAUSED, "gpu0": RUNNING},
    ),
    "status_after_clean.json": ({5: STASHED}, BOTH_RUNNING),
    "status_env_task.json": ({5: STASHED, 6: SUCCESS}, BOTH_RUNNING),
    "status_before_daemon_kill9.json": (
        {5: STASHED, 6: SUCCESS, 7: ("survivor", "gpu0", "running", None, None)},
        BOTH_RUNNING,
    ),
    "status_after_daemon_restart.json": (
        {5: STASHED, 6: SUCCESS, 7: ("survivor", "gpu0", "done", "killed", None)},
        BOTH_RUNNING,
    ),
    "status_restart2_before.json": (
        {0: ("long", "gpu0", "running", None, None), 1: ("waiting", "gpu0", "queued", None, None)},
        BOTH_RUNNING,
    ),
    "status_restart2_after.json": (
        {0: ("long", "gpu0", "done", "killed", None), 1: ("waiting", "gpu0", "queued", None, None)},
        {"default": RUNNING, "gpu0": PAUSED},
    ),
    "status_restart2_after_start.json": (
        {
            0: ("long", "gpu0", "done", "killed", None),
            1: ("waiting", "gpu0", "done", "success", None),
        },
        BOTH_RUNNING,
    ),
}
LOGS_312 = ["log_failed3.json", "log_all.json"]

CATALOGUE = {
    *STATUS_ALL_STATES,
    *STATE_V2,
    *STATE_V4,
    EMPTY_QUEUE,
    TRUNCATED,
    *GROUPS_V3,
    *GROUPS_V4,
    *LOGS_V3,
    *LOGS_V4,
    STATUS_OBJECTS,
    STATUS_OBJECT_NANOS,
    *ADD_OUTPUTS,
    *REAL_GROUPS,
    LOG_STASHED,
    LOG_UNKNOWN_ID,
    AI_REPRODUCED,
    *(V312 + name for name in STATUS_312),
    *(V312 + name for name in LOGS_312),
}


def test_every_sample_file_is_read_by_some_test() -> None:
    root = samples_dir()
    present = {
        path.relative_to(root).as_posix()
        for path in [*root.iterdir(), *(root / "real").iterdir(), *(root / V312).iterdir()]
        if path.is_file() and path.name not in ("README.md", "SOURCES.md")
    }
    assert present == CATALOGUE


# ----------------------------------------------------------------------- status

# The same scenario in v3 and v4 form: id -> (label, group, state, result, exit code).
ALL_STATES = {
    0: (None, "default", "done", "success", None),
    1: ("build", "default", "done", "failed", 1),
    2: (None, "default", "done", "failed_to_spawn", None),
    3: ("train", "gpu", "done", "killed", None),
    4: (None, "default", "done", "errored", None),
    5: ("test", "default", "done", "dependency_failed", None),
    6: ("train", "gpu", "running", None, None),
    7: (None, "gpu", "paused", None, None),
    8: ("train", "gpu", "queued", None, None),
    9: ("backup", "default", "stashed", None, None),
    10: ("nightly", "default", "stashed", None, None),
    11: (None, "default", "locked", None, None),
    12: ("report", "default", "queued", None, None),
}
SPAWN_ERROR = (
    "Failed to spawn child 2 with err: Os { code: 2, kind: NotFound, "
    'message: "No such file or directory" }'
)


def summary(snapshot: PueueState) -> dict[int, tuple[Any, ...]]:
    return {
        task.id: (task.label, task.group, task.state, task.result, task.exit_code)
        for task in snapshot.tasks.values()
    }


@pytest.mark.parametrize("name", STATUS_ALL_STATES)
def test_every_task_state_and_result_is_read_from_v3_and_v4_status(name: str) -> None:
    snapshot = parse_status(sample(name))

    assert summary(snapshot) == ALL_STATES
    assert snapshot.tasks[2].detail == SPAWN_ERROR
    assert all(t.detail is None for t in snapshot.tasks.values() if t.id != 2)


@pytest.mark.parametrize("name", STATUS_ALL_STATES[:2])
def test_v3_status_times_are_task_level_and_nanoseconds_truncate(name: str) -> None:
    tasks = parse_status(sample(name)).tasks

    # 2025-03-10T07:00:01.114508871Z: 871 ns are dropped, not rounded up.
    assert tasks[0].created_at == datetime(2025, 3, 10, 7, 0, 1, 114508, tzinfo=UTC)
    assert tasks[0].start == datetime(2025, 3, 10, 7, 0, 1, 302877, tzinfo=UTC)
    assert tasks[0].end == datetime(2025, 3, 10, 7, 0, 1, 412003, tzinfo=UTC)
    assert tasks[0].created_at.utcoffset() == timedelta(0)
    assert tasks[5].start == tasks[5].end == datetime(2025, 3, 10, 7, 3, 13, 300100, tzinfo=UTC)
    assert tasks[6].start == datetime(2025, 3, 10, 8, 0, 0, 551230, tzinfo=UTC)
    assert tasks[6].end is None
    # Six fraction digits, as macOS prints them.
    assert tasks[7].created_at == datetime(2025, 3, 10, 8, 0, 5, 700312, tzinfo=UTC)
    assert tasks[7].start == datetime(2025, 3, 10, 8, 0, 6, 12044, tzinfo=UTC)
    assert (tasks[8].start, tasks[8].end) == (None, None)


@pytest.mark.parametrize("name", STATUS_ALL_STATES[2:])
def test_v4_status_times_come_from_inside_the_status_and_keep_their_offset(name: str) -> None:
    tasks = parse_status(sample(name)).tasks

    assert tasks[0].created_at == datetime(2025, 3, 10, 9, 0, 1, 114508, tzinfo=PLUS_2)
    assert tasks[0].created_at.utcoffset() == timedelta(hours=2)
    assert tasks[1].start == datetime(2025, 3, 10, 9, 1, 0, 702155, tzinfo=PLUS_2)
    assert tasks[1].end == datetime(2025, 3, 10, 9, 3, 12, 998331, tzinfo=PLUS_2)
    assert tasks[6].start == datetime(2025, 3, 10, 10, 0, 0, 551230, tzinfo=PLUS_2)
    assert tasks[6].end is None
    assert tasks[7].start == datetime(2025, 3, 10, 10, 0, 6, 12044, tzinfo=PLUS_2)
    assert (tasks[8].start, tasks[8].end) == (None, None)
    assert (tasks[11].start, tasks[11].end) == (None, None)


def test_v3_and_v4_forms_of_one_scenario_give_the_same_instants() -> None:
    v3 = parse_status(sample("v3_status_all_states.json")).tasks
    v4 = parse_status(sample("v4_status_all_states.json")).tasks

    for task_id, task in v3.items():
        other = v4[task_id]
        assert (task.created_at, task.start, task.end) == (other.created_at, other.start, other.end)


def test_group_states_are_read_from_status_including_transient_reset() -> None:
    v3 = parse_status(sample("v3_status_all_states.json")).groups
    v4 = parse_status(sample("v4_status_all_states.json")).groups

    expected = {
        "default": PueueGroup("running", 1),
        "gpu": PueueGroup("running", 2),
        "io": PueueGroup("paused", 0),
    }
    assert v3 == expected
    assert v4 == {**expected, "scratch": PueueGroup("reset", 1)}


@pytest.mark.parametrize("name", STATE_V2)
def test_pre_v3_state_without_created_at_is_read(name: str) -> None:
    snapshot = parse_status(sample(name))

    assert summary(snapshot) == {
        0: (None, "default", "done", "success", None),
        1: (None, "test", "done", "success", None),
        2: (None, "test", "queued", None, None),
        3: (None, "default", "stashed", None, None),
    }
    assert all(task.created_at is None for task in snapshot.tasks.values())
    assert snapshot.tasks[0].start == datetime(2022, 5, 9, 18, 41, 29, 273563, tzinfo=PLUS_2)
    assert snapshot.tasks[0].end == datetime(2022, 5, 9, 18, 41, 29, 473998, tzinfo=PLUS_2)
    assert snapshot.groups == {
        "default": PueueGroup("running", 1),
        "test": PueueGroup("paused", 2),
    }


@pytest.mark.parametrize("name", STATE_V4)
def test_upstream_v4_state_fixture_is_read(name: str) -> None:
    snapshot = parse_status(sample(name))

    assert summary(snapshot) == {
        0: (None, "default", "done", "success", None),
        1: (None, "default", "done", "failed", 2),
        2: (None, "default", "stashed", None, None),
        3: (None, "default", "running", None, None),
        4: (None, "default", "queued", None, None),
        5: (None, "default", "queued", None, None),
    }
    first = snapshot.tasks[0]
    assert first.created_at == datetime(2024, 7, 18, 14, 55, 2, 656354, tzinfo=PLUS_2)
    assert first.start == datetime(2024, 7, 18, 14, 55, 2, 890447, tzinfo=PLUS_2)
    assert first.end == datetime(2024, 7, 18, 14, 55, 3, 191922, tzinfo=PLUS_2)
    assert snapshot.tasks[3].start == datetime(2024, 7, 18, 14, 55, 23, 365190, tzinfo=PLUS_2)
    assert snapshot.groups == {
        "default": PueueGroup("running", 1),
        "test": PueueGroup("running", 1),
    }


def test_live_status_of_an_empty_queue_is_read() -> None:
    snapshot = parse_status(sample(EMPTY_QUEUE))

    assert snapshot == PueueState(tasks={}, groups={"default": PueueGroup("running", 1)})


def test_live_status_cut_off_midway_is_rejected_as_output_error() -> None:
    raw = sample(TRUNCATED)

    for value in (raw, raw.decode()):
        with pytest.raises(PueueOutputError):
            parse_status(value)


def test_status_is_read_from_text_as_well_as_bytes() -> None:
    raw = sample("v4_status_all_states.json")

    assert parse_status(raw.decode()) == parse_status(raw)


def test_label_shared_by_three_sample_tasks_resolves_to_the_newest() -> None:
    snapshot = to_snapshot(parse_status(sample("v4_status_all_states.json")))
    assert [t.id for t in snapshot.tasks_with_label("train")] == [3, 6, 8]

    assert find_task_by_label(snapshot, "train") == Found(snapshot.tasks[8])
    created_6 = datetime(2025, 3, 10, 8, 0, 0, 250000, tzinfo=UTC)  # the same instant as +02:00
    assert find_task_by_label(snapshot, "train", created_at=created_6) == Found(snapshot.tasks[6])


def test_groups_are_filtered_client_side() -> None:
    snapshot = to_snapshot(parse_status(sample("v3_status_all_states.json")))

    assert [t.id for t in snapshot.tasks_in_slot("gpu")] == [3, 6, 7, 8]
    assert snapshot.tasks_in_slot("io") == []


def test_unknown_extra_fields_are_ignored() -> None:
    state = json.loads(sample("v4_status_all_states.json"))
    state["future"] = {"nested": [1, 2, {"x": None}]}
    state["tasks"]["6"]["future_field"] = "x"
    state["tasks"]["6"]["status"]["Running"]["future_field"] = 1
    state["groups"]["gpu"]["future_field"] = True

    assert parse_status(json.dumps(state)) == parse_status(sample("v4_status_all_states.json"))


def test_two_thousand_tasks_are_read_completely() -> None:
    state = json.loads(sample("v4_status_all_states.json"))
    templates = list(state["tasks"].values())
    state["tasks"] = {
        str(i): {**templates[i % len(templates)], "id": i, "label": f"mqi:c{i}:a1"}
        for i in range(2000)
    }

    snapshot = parse_status(json.dumps(state, separators=(",", ":")))

    assert len(snapshot.tasks) == 2000
    assert snapshot.tasks[1999].label == "mqi:c1999:a1"
    assert snapshot.tasks[1999].state == ALL_STATES[1999 % 13][2]


# ------------------------------------------------------------ real pueue 3.1.2

SPAWN_ERROR_4 = (
    "Failed to spawn child 4 with err: Os { code: 2, kind: NotFound, "
    'message: "No such file or directory" }'
)


def at(hour: int, minute: int, second: int, micro: int) -> datetime:
    """A time of 2026-12-02 (UTC), the day of the 3.1.2 captures."""
    return datetime(2026, 12, 2, hour, minute, second, micro, tzinfo=UTC)


def status_312(name: str) -> PueueState:
    return parse_status(sample(V312 + name))


def missing_log_error(task_id: int) -> str:
    return (
        "(Pueue error) Failed to get log file handle: I/O error at path "
        f'"/home/mqi/.local/share/pueue/task_logs/{task_id}.log" while getting log file handle:\n'
        "No such file or directory (os error 2)"
    )


@pytest.mark.parametrize(("name", "expected"), STATUS_312.items())
def test_each_real_3_1_2_status_capture_reads_as_its_readme_describes(
    name: str, expected: tuple[dict[int, tuple[Any, ...]], dict[str, PueueGroup]]
) -> None:
    tasks, groups = expected

    snapshot = status_312(name)

    assert summary(snapshot) == tasks
    assert snapshot.groups == groups


@pytest.mark.parametrize("name", [*STATUS_312, *LOGS_312])
def test_every_real_3_1_2_timestamp_is_utc_written_as_plus_00_00(name: str) -> None:
    raw = sample(V312 + name)
    assert b"+00:00" in raw and b'Z"' not in raw  # chrono <= 0.4.26 prints no `Z`
    if name in LOGS_312:
        tasks = [entry.task for entry in parse_log(raw).values()]
    else:
        tasks = list(parse_status(raw).tasks.values())

    moments = [m for t in tasks for m in (t.created_at, t.start, t.end) if m is not None]

    assert len(moments) >= len(tasks)
    assert all(moment.utcoffset() == timedelta(0) for moment in moments)


def test_real_3_1_2_plus_00_00_and_z_give_the_same_snapshot() -> None:
    raw = sample(V312 + "status_after_plain_kill.json")

    assert parse_status(raw.replace(b"+00:00", b"Z")) == parse_status(raw)


def test_real_3_1_2_running_task_is_running_with_its_start_time() -> None:
    task = status_312("status_running.json").tasks[0]

    assert (task.label, task.group, task.state) == ("mqi-test-1", "gpu0", "running")
    # 19:50:51.751493629+00:00: nanoseconds are truncated, not rounded.
    assert task.created_at == at(19, 50, 51, 751493)
    assert task.start == at(19, 50, 51, 926704)
    assert task.end is None


def test_real_3_1_2_failed_task_has_exit_code_3_and_keeps_its_start() -> None:
    running = status_312("status_running.json").tasks[0]
    task = status_312("status_done_failed3.json").tasks[0]

    assert (task.state, task.result, task.exit_code, task.detail) == ("done", "failed", 3, None)
    assert (task.created_at, task.start) == (running.created_at, running.start)
    assert task.end == at(19, 50, 53, 929202)


def test_real_3_1_2_paused_task_keeps_its_slot_and_start_while_the_next_waits() -> None:
    tasks = status_312("status_paused.json").tasks

    assert (tasks[1].state, tasks[1].start, tasks[1].end) == (
        "paused",
        at(19, 50, 55, 341024),
        None,
    )
    assert (tasks[2].state, tasks[2].start, tasks[2].end) == ("queued", None, None)


def test_real_3_1_2_killed_task_ends_and_the_next_one_in_the_group_starts() -> None:
    tasks = status_312("status_killed.json").tasks

    assert (tasks[1].result, tasks[1].exit_code) == ("killed", None)
    assert (tasks[1].start, tasks[1].end) == (at(19, 50, 55, 341024), at(19, 50, 56, 357454))
    assert (tasks[2].state, tasks[2].start) == ("running", at(19, 50, 56, 363730))


def test_real_3_1_2_killing_a_group_pauses_it_until_it_is_started() -> None:
    killed = status_312("status_killed_group.json")
    resumed = status_312("status_group_resumed.json")

    assert killed.tasks[2].result == "killed"
    assert killed.tasks[2].end == at(19, 50, 56, 880046)
    assert killed.groups["gpu0"] == PueueGroup("paused", 1)
    assert resumed.groups["gpu0"] == PueueGroup("running", 1)
    assert resumed.tasks == killed.tasks


def test_real_3_1_2_stashed_tasks_have_no_start_with_or_without_a_delay() -> None:
    tasks = status_312("status_stashed_delayed.json").tasks

    for task_id in (4, 5):  # `add -s` and `add -d 1h`
        task = tasks[task_id]
        assert (task.state, task.result, task.start, task.end) == ("stashed", None, None, None)
    assert tasks[5].created_at == at(19, 50, 58, 962864)


def test_real_3_1_2_spawn_failure_carries_pueues_error_and_starts_and_ends_at_once() -> None:
    task = status_312("status_failed_to_spawn.json").tasks[4]

    assert (task.state, task.result, task.exit_code) == ("done", "failed_to_spawn", None)
    assert task.detail == SPAWN_ERROR_4
    # The README says start equals end; the file has them 2.2 µs apart
    # (19:50:59.007045735 and 19:50:59.007047936): two calls of Local::now().
    assert (task.start, task.end) == (at(19, 50, 59, 7045), at(19, 50, 59, 7047))


def test_real_3_1_2_task_being_edited_is_locked_then_stashed_again() -> None:
    locked = status_312("status_locked.json").tasks[5]
    edited = status_312("status_after_edit.json").tasks[5]

    assert (locked.state, locked.result, locked.start) == ("locked", None, None)
    assert (edited.state, edited.start) == ("stashed", None)
    assert locked.created_at == edited.created_at == at(19, 50, 58, 962864)


def test_real_3_1_2_dependency_failure_starts_and_ends_at_once() -> None:
    task = status_312("status_dependency_failed.json").tasks[6]

    assert (task.result, task.exit_code, task.detail) == ("dependency_failed", None, None)
    # 19:51:03.213100118 and .213100473: equal once truncated to microseconds.
    assert task.start == task.end == at(19, 51, 3, 213100)


def test_real_3_1_2_plain_kill_kills_the_default_group_and_pauses_only_it() -> None:
    snapshot = status_312("status_after_plain_kill.json")

    assert (snapshot.tasks[8].group, snapshot.tasks[8].result) == ("default", "killed")
    assert snapshot.groups == {
        "default": PueueGroup("paused", 1),
        "gpu0": PueueGroup("running", 1),
    }


def test_real_3_1_2_ids_are_handed_out_again_after_clean() -> None:
    before = status_312("status_dependency_failed.json").tasks[6]
    cleaned = status_312("status_after_clean.json")
    again = status_312("status_env_task.json").tasks[6]

    assert list(cleaned.tasks) == [5]  # only the stashed task is left
    assert (before.result, again.result) == ("dependency_failed", "success")
    assert before.created_at == at(19, 51, 3, 28399)
    assert again.created_at == at(19, 51, 6, 153530)  # same id, another task


def test_real_3_1_2_daemon_restart_turns_the_running_task_into_killed_with_no_end() -> None:
    before = status_312("status_before_daemon_kill9.json")
    after = status_312("status_after_daemon_restart.json")

    survivor = after.tasks[7]
    assert before.tasks[7].state == "running"
    assert (survivor.label, survivor.state, survivor.result) == ("survivor", "done", "killed")
    assert survivor.start == before.tasks[7].start == at(19, 51, 7, 323021)
    assert survivor.end is None  # pueue 3 does not stamp an end on restart
    assert survivor.created_at == before.tasks[7].created_at
    assert {i: t for i, t in after.tasks.items() if i != 7} == {
        i: t for i, t in before.tasks.items() if i != 7
    }
    # No queued task anywhere, so no group is paused.
    assert after.groups == before.groups == BOTH_RUNNING


def test_real_3_1_2_daemon_restart_pauses_the_group_whose_task_was_queued() -> None:
    before = status_312("status_restart2_before.json")
    after = status_312("status_restart2_after.json")
    started = status_312("status_restart2_after_start.json")

    assert [(t.label, t.state, t.result) for t in after.tasks.values()] == [
        ("long", "done", "killed"),
        ("waiting", "queued", None),
    ]
    assert after.tasks[0].start == before.tasks[0].start == at(19, 51, 43, 455069)
    assert after.tasks[0].end is None
    assert after.tasks[1] == before.tasks[1]
    assert after.groups == {"default": PueueGroup("running", 1), "gpu0": PueueGroup("paused", 1)}
    # `pueue start -g gpu0`: the queued task runs, the group runs again.
    assert started.tasks[0] == after.tasks[0]
    waiting = started.tasks[1]
    assert (waiting.result, waiting.start, waiting.end) == (
        "success",
        at(19, 51, 46, 294841),
        at(19, 51, 46, 496266),
    )
    assert started.groups == BOTH_RUNNING


def test_real_3_1_2_log_of_the_failed_task_has_its_task_and_an_empty_output() -> None:
    logs = parse_log(sample(V312 + "log_failed3.json"))

    assert list(logs) == [0]
    assert logs[0].task == status_312("status_done_failed3.json").tasks[0]
    assert logs[0].output == ""


def test_real_3_1_2_log_has_both_streams_or_pueues_error_for_a_task_without_a_log() -> None:
    logs = parse_log(sample(V312 + "log_all.json"))
    tasks = status_312("status_after_plain_kill.json").tasks  # nothing changed for 0..7

    assert list(logs) == list(range(8))
    assert all(logs[i].task == tasks[i] for i in logs)
    assert logs[7].output == "hello\nerr"  # stdout and stderr, no final newline
    assert [logs[i].output for i in (0, 1, 2, 3)] == ["", "", "", ""]
    # Failed to spawn, stashed and dependency-failed tasks never wrote a log.
    assert [logs[i].output for i in (4, 5, 6)] == [missing_log_error(i) for i in (4, 5, 6)]
    assert (logs[4].task.result, logs[4].task.detail) == ("failed_to_spawn", SPAWN_ERROR_4)


def test_real_3_1_2_label_lookup_finds_the_task_by_its_label() -> None:
    snapshot = to_snapshot(status_312("status_restart2_after.json"))

    assert find_task_by_label(snapshot, "waiting") == Found(snapshot.tasks[1])
    assert find_task_by_label(snapshot, "long") == Found(snapshot.tasks[0])


# ------------------------------------------------------------ one status value


STATUS_OBJECT_LINES = [
    ("done", "killed", None),
    ("stashed", None, None),
    ("done", "failed", 1),
    ("done", "success", None),
    ("done", "failed", 127),
    ("done", "success", None),
    ("running", None, None),
    ("done", "failed", 1),
    ("done", "failed", 3),
    ("done", "success", None),
]


def test_every_live_macos_status_object_is_read() -> None:
    lines = sample(STATUS_OBJECTS).decode().splitlines()

    statuses = [parse_task_status(line) for line in lines]

    assert [(s.state, s.result, s.exit_code) for s in statuses] == STATUS_OBJECT_LINES
    assert statuses[0].start == datetime(2026, 7, 26, 22, 2, 45, 233934, tzinfo=PLUS_8)
    assert statuses[0].end == datetime(2026, 7, 26, 22, 2, 59, 722335, tzinfo=PLUS_8)
    assert statuses[6].start == datetime(2026, 7, 26, 22, 24, 41, 715562, tzinfo=PLUS_8)
    assert statuses[6].end is None
    assert (statuses[1].start, statuses[1].end) == (None, None)


def test_live_linux_status_object_truncates_nanoseconds() -> None:
    status = parse_task_status(sample(STATUS_OBJECT_NANOS))

    assert (status.state, status.result, status.exit_code) == ("done", "success", None)
    # ...:02.796040223+08:00 and ...:03.098818196+08:00
    assert status.start == datetime(2026, 7, 27, 1, 53, 2, 796040, tzinfo=PLUS_8)
    assert status.end == datetime(2026, 7, 27, 1, 53, 3, 98818, tzinfo=PLUS_8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-10T07:00:01Z", datetime(2025, 3, 10, 7, 0, 1, tzinfo=UTC)),
        ("2025-03-10T07:00:01.5Z", datetime(2025, 3, 10, 7, 0, 1, 500000, tzinfo=UTC)),
        ("2025-03-10T07:00:01.123Z", datetime(2025, 3, 10, 7, 0, 1, 123000, tzinfo=UTC)),
        ("2025-03-10T07:00:01.123456+00:00", datetime(2025, 3, 10, 7, 0, 1, 123456, tzinfo=UTC)),
        ("2025-03-10T07:00:01.999999999Z", datetime(2025, 3, 10, 7, 0, 1, 999999, tzinfo=UTC)),
        (
            "2025-03-10T01:30:01.000000001-05:30",
            datetime(2025, 3, 10, 1, 30, 1, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        ("2025-03-10t07:00:01z", datetime(2025, 3, 10, 7, 0, 1, tzinfo=UTC)),
    ],
)
def test_timestamps_with_any_fraction_and_offset_are_read(text: str, expected: datetime) -> None:
    raw = json.dumps({"Running": {"enqueued_at": text, "start": text}})

    start = parse_task_status(raw).start

    assert start == expected
    assert start is not None and start.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-10T07:00:01",  # no offset: ambiguous
        "2025-03-10 07:00:01Z",
        "2025-03-10T07:00:01.1234567890Z",
        "2025-02-30T07:00:01Z",
        "2025-03-10T24:00:01Z",
        "2025-03-10T07:00:60Z",
        "2025-03-10T07:00:01+24:00",
        "2025-03-10T07:00:01+0200",
        "２０２５-03-10T07:00:01Z",
        "",
    ],
)
def test_timestamps_that_are_not_rfc3339_with_offset_are_rejected(text: str) -> None:
    raw = json.dumps({"Running": {"enqueued_at": text, "start": text}})

    with pytest.raises(PueueOutputError):
        parse_task_status(raw)


@pytest.mark.parametrize(
    "raw",
    [
        '"Frobnicated"',
        '"Done"',
        '"Stashed"',
        "{}",
        '{"Queued":{},"Running":{}}',
        '{"Done":"Exploded"}',
        '{"Done":{}}',
        '{"Done":{"Failed":"1"}}',
        '{"Done":{"Failed":1.5}}',
        '{"Done":{"Failed":4294967296}}',
        '{"Done":{"FailedToSpawn":null}}',
        '{"Done":{"Success":null}}',
        '{"Done":{"result":null,"start":"2025-03-10T07:00:01Z"}}',
        '{"Done":{"result":{"Failed":1,"Killed":null}}}',
        '{"Running":[]}',
        '{"Running":{"start":5}}',
        '{"Locked":{"previous_status":' + "[" * 100_000 + "]" * 100_000 + "}}",
        "null",
        "42",
    ],
)
def test_unknown_or_malformed_status_values_are_rejected(raw: str) -> None:
    with pytest.raises(PueueOutputError):
        parse_task_status(raw)


# ------------------------------------------------------------------ malformed


def status_with(task: dict[str, Any], *, key: str = "0") -> str:
    return json.dumps({"tasks": {key: task}, "groups": {}})


GOOD_TASK = {"id": 0, "group": "default", "label": None, "status": "Queued"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"null",
        b"[]",
        b'{"tasks":{}}',
        b'{"groups":{}}',
        b'{"tasks":[],"groups":{}}',
        b'{"tasks":{},"groups":{"default":{"status":"Frozen","parallel_tasks":1}}}',
        b'{"tasks":{},"groups":{"default":{"status":"Running","parallel_tasks":-1}}}',
        b'{"tasks":{},"groups":{"default":{"status":"Running"}}}',
        b'{"tasks":{},"groups":{}} trailing',
        b"\xff\xfe{}",
        b"[" * 100_000,
        ("[" * 50_000 + "]" * 50_000).encode(),
        b'{"tasks":{},"groups":{},"skipped":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        status_with(GOOD_TASK, key="1"),
        status_with(GOOD_TASK, key="abc"),
        status_with({**GOOD_TASK, "id": -1}, key="-1"),
        status_with({**GOOD_TASK, "id": True}),
        status_with({**GOOD_TASK, "label": 7}),
        status_with({**GOOD_TASK, "created_at": "yesterday"}),
        status_with({k: v for k, v in GOOD_TASK.items() if k != "status"}),
        status_with({k: v for k, v in GOOD_TASK.items() if k != "group"}),
        status_with({k: v for k, v in GOOD_TASK.items() if k != "id"}),
        '{"tasks":{},"groups":{"\ud800":{"status":"Running","parallel_tasks":1}}}',
    ],
)
def test_malformed_status_output_is_an_output_error_not_a_crash(raw: bytes | str) -> None:
    with pytest.raises(PueueOutputError):
        parse_status(raw)


def test_a_status_truncated_anywhere_is_rejected_and_never_partial() -> None:
    raw = sample("v3_status_all_states.json").rstrip()

    for cut in range(len(raw)):  # bounded: one parse per byte of a 7.5 kB sample
        with pytest.raises(PueueOutputError):
            parse_status(raw[:cut])


def parse_groups(raw: str | bytes) -> dict[str, PueueGroup]:
    """A `pueue group --json` map read as the group map every `status --json` carries
    (pueue 3.1 to 3.3 have no `group --json`: the daemon reads groups from the status)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return parse_status('{"tasks":{},"groups":' + text.strip() + "}").groups


def test_log_output_truncated_anywhere_is_rejected() -> None:
    raw = sample("v4_log_json.json").rstrip()
    for cut in range(1, len(raw)):  # `{}` is valid, so the empty prefix is the only skip
        with pytest.raises(PueueOutputError):
            parse_log(raw[:cut])


# ------------------------------------------------------------------ groups, logs


@pytest.mark.parametrize("name", GROUPS_V3)
def test_v3_group_list_is_read(name: str) -> None:
    assert parse_groups(sample(name)) == {
        "default": PueueGroup("running", 1),
        "gpu": PueueGroup("running", 2),
        "io": PueueGroup("paused", 0),
    }


@pytest.mark.parametrize("name", GROUPS_V4)
def test_v4_group_list_with_reset_group_is_read(name: str) -> None:
    assert parse_groups(sample(name)) == {
        "default": PueueGroup("running", 1),
        "gpu": PueueGroup("running", 2),
        "io": PueueGroup("paused", 0),
        "scratch": PueueGroup("reset", 1),
    }


@pytest.mark.parametrize(("name", "expected"), REAL_GROUPS.items())
def test_live_group_lists_are_read(name: str, expected: dict[str, PueueGroup]) -> None:
    assert parse_groups(sample(name)) == expected


@pytest.mark.parametrize("name", LOGS_V3)
def test_v3_log_gives_tasks_with_their_output(name: str) -> None:
    logs = parse_log(sample(name))

    assert sorted(logs) == [0, 1, 6]
    assert logs[0].output == "hello\n"
    assert (logs[0].task.state, logs[0].task.result) == ("done", "success")
    assert (logs[1].task.label, logs[1].task.result, logs[1].task.exit_code) == (
        "build",
        "failed",
        1,
    )
    assert logs[1].output == (
        "cc -o app main.c\nmain.c:3:1: error: expected ';'\nmake: *** [Makefile:2: app] Error 1\n"
    )
    assert logs[6].task.state == "running"
    assert logs[6].task.start == datetime(2025, 3, 10, 8, 0, 0, 551230, tzinfo=UTC)
    assert logs[6].output == "epoch 1/100 loss=0.93\nepoch 2/100 loss=0.71\n"


@pytest.mark.parametrize("name", LOGS_V4)
def test_v4_log_gives_tasks_with_their_output(name: str) -> None:
    logs = parse_log(sample(name))

    assert sorted(logs) == [0, 1, 2, 6, 9]
    assert (logs[2].task.result, logs[2].task.detail) == ("failed_to_spawn", SPAWN_ERROR)
    assert logs[2].output == (
        "Pueue error, failed to spawn task. Check your command.\n" + SPAWN_ERROR
    )
    assert logs[1].task.end == datetime(2025, 3, 10, 9, 3, 12, 998331, tzinfo=PLUS_2)
    assert (logs[9].task.state, logs[9].output) == ("stashed", "")


def test_live_log_of_a_stashed_task_is_read() -> None:
    logs = parse_log(sample(LOG_STASHED))

    task = logs[1].task
    assert (task.id, task.label, task.group, task.state) == (1, None, "default", "stashed")
    assert task.created_at == datetime(2026, 7, 26, 22, 2, 45, 180046, tzinfo=PLUS_8)
    assert logs[1].output.startswith("(Pueue error) Failed to get log file handle")


def test_live_log_of_an_unknown_id_is_empty() -> None:
    assert parse_log(sample(LOG_UNKNOWN_ID)) == {}


def test_ai_reproduced_log_excerpt_is_not_json_and_is_rejected() -> None:
    with pytest.raises(PueueOutputError):
        parse_log(sample(AI_REPRODUCED))


# --------------------------------------------------------------------- pueue add


@pytest.mark.parametrize("name", sorted(ADD_OUTPUTS))
def test_live_human_add_output_is_rejected_because_we_always_ask_for_the_bare_id(
    name: str,
) -> None:
    with pytest.raises(PueueOutputError):
        parse_add_output(sample(name).decode())


@pytest.mark.parametrize(
    ("stdout", "task_id"),
    [
        ("0\n", 0),
        ("68", 68),
        ("  12  \r\n\n", 12),
        ("Different daemon version detected '3.3.0'. Consider restarting it.\n7\n", 7),
    ],
)
def test_printed_task_id_is_read_from_the_last_non_empty_line(stdout: str, task_id: int) -> None:
    assert parse_add_output(stdout) == task_id


@pytest.mark.parametrize(
    "stdout",
    ["", "\n \n", "New task added (id 32).", "7\nwarning", "-1", "+1", "1.0", "٣", "9" * 5000],
)
def test_add_output_without_a_bare_id_on_the_last_line_is_rejected(stdout: str) -> None:
    with pytest.raises(PueueOutputError):
        parse_add_output(stdout)


# ---------------------------------------------------------------------- fuzzing

PARSERS = [parse_status, parse_log, parse_task_status]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def survives(parse: Any, raw: bytes | str) -> object:
    """Run ``parse``: an answer or PueueOutputError are fine, anything else fails the test."""
    try:
        return parse(raw)
    except PueueOutputError:
        return None


@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_give_an_answer_or_an_output_error(raw: bytes) -> None:
    for parse in PARSERS:
        survives(parse, raw)


@given(raw=st.text(st.characters(blacklist_categories=()), max_size=200))
def test_arbitrary_text_with_surrogates_gives_an_answer_or_an_output_error(raw: str) -> None:
    for parse in PARSERS:
        survives(parse, raw)


@given(value=json_values)
def test_arbitrary_json_gives_an_answer_or_an_output_error(value: object) -> None:
    raw = json.dumps(value)
    for parse in PARSERS:
        survives(parse, raw)


def paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a decoded JSON document, as a key/index path."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def mutated(document: object, path: tuple[Any, ...], replacement: object, delete: bool) -> object:
    if not path:
        return replacement
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return copy


MUTABLE = [*STATUS_ALL_STATES[::2], STATE_V2[0], STATE_V4[0], EMPTY_QUEUE]


@settings(max_examples=300)
@given(name=st.sampled_from(MUTABLE), data=st.data())
def test_mutated_real_status_gives_a_complete_snapshot_or_an_output_error(
    name: str, data: st.DataObject
) -> None:
    document = json.loads(sample(name))
    path = data.draw(st.sampled_from(paths(document)), label="path")
    delete = bool(path) and data.draw(st.booleans(), label="delete")
    replacement = None if delete else data.draw(json_values, label="replacement")
    changed = mutated(document, path, replacement, delete)

    snapshot = survives(parse_status, json.dumps(changed))

    if snapshot is not None:
        assert isinstance(snapshot, PueueState)
        assert isinstance(changed, dict)
        assert len(snapshot.tasks) == len(changed["tasks"])  # never a partial snapshot
        assert len(snapshot.groups) == len(changed["groups"])


@settings(max_examples=150)
@given(name=st.sampled_from([*GROUPS_V4[:1], *LOGS_V4[:1]]), data=st.data())
def test_mutated_real_group_and_log_outputs_give_an_answer_or_an_output_error(
    name: str, data: st.DataObject
) -> None:
    document = json.loads(sample(name))
    path = data.draw(st.sampled_from(paths(document)), label="path")
    delete = bool(path) and data.draw(st.booleans(), label="delete")
    replacement = None if delete else data.draw(json_values, label="replacement")
    raw = json.dumps(mutated(document, path, replacement, delete))

    for parse in (parse_groups, parse_log):
        survives(parse, raw)
