"""Reading pueue's output: every real and constructed sample, malformed input, fuzzing.

The samples live in ``shared/pueue-samples`` beside the repository (override with
``MQI_PUEUE_SAMPLES``). Without them these tests fail: they are the only ground truth.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqi_es.pueue import (
    Found,
    PueueOutputError,
    find_task_by_label,
    parse_add_output,
    parse_groups,
    parse_log,
    parse_status,
    parse_task_status,
)
from mqi_es.snapshot import RemoteGroup, StatusSnapshot

PLUS_2 = timezone(timedelta(hours=2))
PLUS_8 = timezone(timedelta(hours=8))


@cache
def samples_dir() -> Path:
    override = os.environ.get("MQI_PUEUE_SAMPLES")
    default = Path(__file__).resolve().parents[2] / ".." / "shared" / "pueue-samples"
    path = Path(override) if override else default
    if not (path / "README.md").is_file() or not (path / "real" / "SOURCES.md").is_file():
        pytest.fail(f"pueue samples not found at {path}; set MQI_PUEUE_SAMPLES")
    return path


@cache
def sample(name: str) -> bytes:
    return (samples_dir() / name).read_bytes()


R = "real/"
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
    RAYCAST + "group_json_default.json": {"default": RemoteGroup("running", 1)},
    WRAPPER + "group_json_default_only.json": {"default": RemoteGroup("running", 1)},
    RAYCAST + "groups_map_linux_remote_3groups_jsstringify.json": {
        "default": RemoteGroup("running", 1),
        "ollama": RemoteGroup("running", 1),
        "wf": RemoteGroup("running", 1),
    },
    WRAPPER + "group_json_two_groups_parallel1.json": {
        "default": RemoteGroup("running", 1),
        "test-group": RemoteGroup("running", 1),
    },
    WRAPPER + "group_json_two_groups_parallel2.json": {
        "default": RemoteGroup("running", 1),
        "test-group": RemoteGroup("running", 2),
    },
}
LOG_STASHED = RAYCAST + "log_json_stashed_task_jsontool.json"
LOG_UNKNOWN_ID = RAYCAST + "log_json_unknown_id_empty.json"
AI_REPRODUCED = WRAPPER + "log_json_excerpt_ai_reproduced.txt"

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
}


def test_every_sample_file_is_read_by_some_test() -> None:
    root = samples_dir()
    present = {
        path.relative_to(root).as_posix()
        for path in [*root.iterdir(), *(root / "real").iterdir()]
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


def summary(snapshot: StatusSnapshot) -> dict[int, tuple[Any, ...]]:
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
        "default": RemoteGroup("running", 1),
        "gpu": RemoteGroup("running", 2),
        "io": RemoteGroup("paused", 0),
    }
    assert v3 == expected
    assert v4 == {**expected, "scratch": RemoteGroup("reset", 1)}


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
        "default": RemoteGroup("running", 1),
        "test": RemoteGroup("paused", 2),
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
        "default": RemoteGroup("running", 1),
        "test": RemoteGroup("running", 1),
    }


def test_live_status_of_an_empty_queue_is_read() -> None:
    snapshot = parse_status(sample(EMPTY_QUEUE))

    assert snapshot == StatusSnapshot(tasks={}, groups={"default": RemoteGroup("running", 1)})


def test_live_status_cut_off_midway_is_rejected_as_output_error() -> None:
    raw = sample(TRUNCATED)

    for value in (raw, raw.decode()):
        with pytest.raises(PueueOutputError):
            parse_status(value)


def test_status_is_read_from_text_as_well_as_bytes() -> None:
    raw = sample("v4_status_all_states.json")

    assert parse_status(raw.decode()) == parse_status(raw)


def test_label_shared_by_three_sample_tasks_resolves_to_the_newest() -> None:
    snapshot = parse_status(sample("v4_status_all_states.json"))
    assert [t.id for t in snapshot.tasks_with_label("train")] == [3, 6, 8]

    assert find_task_by_label(snapshot, "train") == Found(snapshot.tasks[8])
    created_6 = datetime(2025, 3, 10, 8, 0, 0, 250000, tzinfo=UTC)  # the same instant as +02:00
    assert find_task_by_label(snapshot, "train", created_at=created_6) == Found(snapshot.tasks[6])


def test_groups_are_filtered_client_side() -> None:
    snapshot = parse_status(sample("v3_status_all_states.json"))

    assert [t.id for t in snapshot.tasks_in_group("gpu")] == [3, 6, 7, 8]
    assert snapshot.tasks_in_group("io") == []


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


def test_group_and_log_outputs_truncated_anywhere_are_rejected() -> None:
    for name, parse in (("v4_group_json.json", parse_groups), ("v4_log_json.json", parse_log)):
        raw = sample(name).rstrip()
        for cut in range(1, len(raw)):  # `{}` is valid, so the empty prefix is the only skip
            with pytest.raises(PueueOutputError):
                parse(raw[:cut])


# ------------------------------------------------------------------ groups, logs


@pytest.mark.parametrize("name", GROUPS_V3)
def test_v3_group_list_is_read(name: str) -> None:
    assert parse_groups(sample(name)) == {
        "default": RemoteGroup("running", 1),
        "gpu": RemoteGroup("running", 2),
        "io": RemoteGroup("paused", 0),
    }


@pytest.mark.parametrize("name", GROUPS_V4)
def test_v4_group_list_with_reset_group_is_read(name: str) -> None:
    assert parse_groups(sample(name)) == {
        "default": RemoteGroup("running", 1),
        "gpu": RemoteGroup("running", 2),
        "io": RemoteGroup("paused", 0),
        "scratch": RemoteGroup("reset", 1),
    }


@pytest.mark.parametrize(("name", "expected"), REAL_GROUPS.items())
def test_live_group_lists_are_read(name: str, expected: dict[str, RemoteGroup]) -> None:
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

PARSERS = [parse_status, parse_groups, parse_log, parse_task_status]

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
        assert isinstance(snapshot, StatusSnapshot)
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
