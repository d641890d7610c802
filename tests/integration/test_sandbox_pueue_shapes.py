"""The stand-in's JSON has the shape of real pueue output (samples in tests/data/pueue-samples).

For ``status --json`` (v4 and v3), ``group --json`` and ``log --json`` the key lists are
compared recursively, in order, per task state variant, and the value encodings are checked:
compact separators on one line, string task ids in numeric order, chrono timestamps.

The v3 dialect is also compared with what a real, running pueue 3.1.2 printed
(``real-3.1.2/``): same keys, nesting and value types per state. It imitates 3.4.1, which
differs from 3.1.2 in two documented ways only: a ``priority`` key (pueue >= 3.2.0) and a
zero UTC offset written ``Z`` instead of ``+00:00`` (chrono >= 0.4.27, pueue >= 3.3.0).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqi_es.sandbox import ThreadedSandboxNode
from tests.fixtures.sandbox import wait_until
from tests.samples import PUEUE_SAMPLES

TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.(\d{3}|\d{6}|\d{9}))?(Z|[+-]\d{2}:\d{2})$"
)
TIME_KEYS = {"created_at", "enqueued_at", "start", "end", "enqueue_at"}


def samples_dir() -> Path:
    assert PUEUE_SAMPLES.is_dir(), f"pueue samples not found at {PUEUE_SAMPLES}"
    return PUEUE_SAMPLES


def sample(name: str) -> Any:
    return json.loads((samples_dir() / name).read_text())


def key_tree(value: Any) -> Any:
    """Keys in order, recursively; ``envs`` is a free map and stays opaque."""
    if isinstance(value, dict):
        return [(key, "map" if key == "envs" else key_tree(item)) for key, item in value.items()]
    return type(value).__name__ if isinstance(value, list) else None


def variant(task: dict[str, Any]) -> str:
    """``Queued``, ``Running``, ``Done/Success``, ``Done/Failed``... for v4 and v3 tasks."""
    status = task["status"]
    if isinstance(status, str):
        return status
    (name, body), *_ = status.items()
    if name != "Done":
        return name
    if isinstance(body, dict) and "result" in body:  # v4 keeps the result inside
        body = body["result"]
    return f"Done/{body if isinstance(body, str) else next(iter(body))}"


def by_variant(tasks: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variant(task): task for task in tasks.values()}


def timestamps(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in TIME_KEYS and item is not None:
                yield item
            elif key != "envs":
                yield from timestamps(item)


def assert_compact_line(raw: str) -> Any:
    assert raw.endswith("\n") and raw.count("\n") == 1
    document = json.loads(raw)
    assert raw[:-1] == json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return document


def pueue_ok(node: ThreadedSandboxNode, *args: str) -> str:
    completed = node.pueue(*args)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def task_variant_of(node: ThreadedSandboxNode, task_id: int) -> str:
    return variant(node.status()["tasks"][str(task_id)])


@pytest.fixture(scope="module", params=["v4", "v3"])
def outputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One node per dialect holding every task state the stand-in produces, 12 tasks."""
    dialect = request.param
    root = tmp_path_factory.mktemp(f"shapes-{dialect}") / "node"
    with ThreadedSandboxNode(root, status_format=dialect) as node:
        add = ["add", "--print-task-id"]
        pueue_ok(node, *add, "-g", "gpu0", "--", "sleep", "30")  # 0: running
        pueue_ok(node, *add, "-g", "gpu0", "-l", "waiting", "--", "true")  # 1: queued
        pueue_ok(node, *add, "--", "true")  # 2: success
        pueue_ok(node, *add, "--", "exit", "2")  # 3: failed 2
        pueue_ok(node, *add, "-w", str(root / "missing"), "--", "true")  # 4: failed to spawn
        pueue_ok(node, *add, "--", "sleep", "30")  # 5: killed
        for _ in range(6):  # 6..11: ids past 9 show that keys sort as numbers
            pueue_ok(node, *add, "-g", "gpu1", "--", "true")
        wait_until(lambda: task_variant_of(node, 5) == "Running")
        pueue_ok(node, "kill", "5")
        wait_until(lambda: task_variant_of(node, 5) == "Done/Killed")
        wait_until(lambda: task_variant_of(node, 11) == "Done/Success")
        yield {
            "dialect": dialect,
            "status": pueue_ok(node, "status", "--json"),
            "group": pueue_ok(node, "group", "--json"),
            "log": pueue_ok(node, "log", "--json"),
        }


def test_status_is_one_compact_line_with_string_ids_in_numeric_order(outputs: Any) -> None:
    status = assert_compact_line(outputs["status"])
    assert list(status) == ["tasks", "groups"]
    assert list(status["tasks"]) == [str(task_id) for task_id in range(12)]
    assert all(task["id"] == int(key) for key, task in status["tasks"].items())


def test_status_covers_every_state_the_stand_in_produces(outputs: Any) -> None:
    tasks = assert_compact_line(outputs["status"])["tasks"]
    assert {variant(task) for task in tasks.values()} == {
        "Running",
        "Queued",
        "Done/Success",
        "Done/Failed",
        "Done/FailedToSpawn",
        "Done/Killed",
    }
    failed = tasks["3"]["status"]["Done"]
    assert failed.get("result", failed) == {"Failed": 2}
    assert "Failed to spawn child 4 with err: Os { code: 2, kind: NotFound" in outputs["status"]


def test_status_tasks_have_the_key_layout_of_the_samples_per_state(outputs: Any) -> None:
    tasks = by_variant(assert_compact_line(outputs["status"])["tasks"])
    if outputs["dialect"] == "v4":
        references = [sample("v4_status_all_states.json"), sample("v4_fixture_v4.0.0_state.json")]
    else:
        references = [sample("v3_status_all_states.json")]
    compared = 0
    for reference in references:
        for name, expected in by_variant(reference["tasks"]).items():
            if name in tasks:
                assert key_tree(tasks[name]) == key_tree(expected), name
                compared += 1
    assert compared >= 6


def test_status_groups_have_the_key_layout_of_the_samples(outputs: Any) -> None:
    groups = assert_compact_line(outputs["status"])["groups"]
    reference = sample(f"{outputs['dialect']}_status_all_states.json")["groups"]["default"]
    assert list(groups) == sorted(groups) == ["default", "gpu0", "gpu1"]
    for group in groups.values():
        assert key_tree(group) == key_tree(reference)
        assert group["status"] in ("Running", "Paused")


def test_timestamps_are_written_as_chrono_writes_them(outputs: Any) -> None:
    reference = sample(f"{outputs['dialect']}_status_all_states.json")
    assert all(TIMESTAMP.match(stamp) for stamp in timestamps(reference))
    written = list(timestamps(json.loads(outputs["status"])))
    assert len(written) >= 30
    assert all(TIMESTAMP.match(stamp) for stamp in written), written


def test_v3_tasks_keep_start_and_end_at_top_level(outputs: Any) -> None:
    tasks = json.loads(outputs["status"])["tasks"]
    if outputs["dialect"] == "v4":
        assert tasks["2"]["status"]["Done"]["result"] == "Success"
        assert "start" not in tasks["2"]
    else:
        assert tasks["2"]["status"] == {"Done": "Success"}
        assert tasks["0"]["status"] == "Running" and tasks["0"]["end"] is None
        assert tasks["3"]["status"] == {"Done": {"Failed": 2}}


def test_group_json_has_the_layout_of_the_samples(outputs: Any) -> None:
    groups = assert_compact_line(outputs["group"])
    reference = sample(f"{outputs['dialect']}_group_json.json")
    assert list(groups) == ["default", "gpu0", "gpu1"]
    for group in groups.values():
        assert key_tree(group) == key_tree(reference["default"])


def test_log_json_has_the_layout_of_the_samples(outputs: Any) -> None:
    entries = assert_compact_line(outputs["log"])
    reference = sample(f"{outputs['dialect']}_log_json.json")
    assert list(entries) == [str(task_id) for task_id in range(12)]
    ours = {variant(entry["task"]): entry for entry in entries.values()}
    compared = 0
    for expected in reference.values():
        name = variant(expected["task"])
        if name in ours:
            assert key_tree(ours[name]) == key_tree(expected), name
            compared += 1
    assert compared >= 2
    assert all(entry["task"]["envs"] == {} for entry in entries.values())
    if outputs["dialect"] == "v4":  # pueue 3 removes the log of a task that failed to spawn
        assert entries["4"]["output"].startswith("Pueue error, failed to spawn task.")


def test_an_empty_v4_node_prints_exactly_what_a_live_pueue_printed(
    sandbox_node_factory: Any,
) -> None:
    node = sandbox_node_factory(groups=())
    live = "real/daviddwlee84__Pueue-Raycast-Extension__"
    status = (samples_dir() / f"{live}status_json_empty_queue.json").read_text()
    groups = (samples_dir() / f"{live}group_json_default.json").read_text()
    assert pueue_ok(node, "status", "--json") == status.strip() + "\n"
    assert pueue_ok(node, "group", "--json") == groups.strip() + "\n"
    assert pueue_ok(node, "log", "--json", "99999") == "{}\n"


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC0", ["07:00:01Z", "07:00:01.114Z", "07:00:01.114508Z", "07:00:01.114508871Z"]),
        ("XST-8", ["15:00:01+08:00", "15:00:01.114+08:00", "15:00:01.114508+08:00"]),
        ("NST+3:30", ["03:30:01-03:30", "03:30:01.114-03:30"]),
    ],
)
def test_timestamps_carry_the_local_offset_and_the_shortest_exact_fraction(
    zone: str, expected: list[str]
) -> None:
    # Run in a child process: the time zone is process-wide state.
    program = (
        "from mqi_es.sandbox.timestamps import rfc3339\n"
        "for ns in (1741590001_000000000, 1741590001_114000000,"
        " 1741590001_114508000, 1741590001_114508871):\n"
        "    print(rfc3339(ns))\n"
    )
    printed = subprocess.run(
        [sys.executable, "-c", program],
        env={"TZ": zone, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [stamp.split("T")[1] for stamp in printed[: len(expected)]] == expected
    assert all(TIMESTAMP.match(stamp) for stamp in printed)


# ------------------------------------------------------------------ real pueue 3.1.2

REAL_312 = "real-3.1.2/"
# A real task in each state the stand-in produces: (capture, task id). Paused, Stashed,
# Locked and Done/DependencyFailed are in the captures too; the stand-in never makes them.
REAL_312_TASKS = {
    "Running": ("status_queued.json", "1"),
    "Queued": ("status_queued.json", "2"),
    "Done/Success": ("status_done_success.json", "3"),
    "Done/Failed": ("status_done_failed3.json", "0"),
    "Done/FailedToSpawn": ("status_failed_to_spawn.json", "4"),
    "Done/Killed": ("status_killed.json", "1"),
}
MISSING_LOG = re.compile(
    r'\(Pueue error\) Failed to get log file handle: I/O error at path "[^"]+/task_logs/4\.log"'
    r" while getting log file handle:\nNo such file or directory \(os error 2\)"
)
only_v3 = pytest.mark.parametrize("outputs", ["v3"], indirect=True)


def real_312(name: str) -> Any:
    return sample(REAL_312 + name)


OPAQUE = {"envs": "map", "label": "string or null"}


def value_types(value: Any) -> Any:
    """The nesting with every value replaced by its JSON type.

    ``envs`` is a free map; ``label`` is a string or null in every state, so both stay opaque.
    """
    if isinstance(value, dict):
        return {key: OPAQUE.get(key) or value_types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [value_types(item) for item in value]
    return type(value).__name__


def as_3_1_2(task: dict[str, Any]) -> dict[str, Any]:
    """A 3.4.1 task without ``priority``, which pueue 3.2.0 added after ``dependencies``."""
    keys = list(task)
    assert keys.index("priority") == keys.index("dependencies") + 1
    return {key: value for key, value in task.items() if key != "priority"}


def test_real_pueue_3_1_2_printed_one_compact_line_with_string_ids_in_numeric_order() -> None:
    captures = sorted((samples_dir() / REAL_312).glob("*.json"))
    assert len(captures) == 24
    for capture in captures:
        document = assert_compact_line(capture.read_text())
        tasks = document["tasks"] if capture.name.startswith("status_") else document
        assert list(tasks) == sorted(tasks, key=int), capture.name
        if capture.name.startswith("status_"):
            assert list(document) == ["tasks", "groups"]


@only_v3
def test_v3_tasks_have_the_keys_and_value_types_of_real_pueue_3_1_2_in_each_state(
    outputs: Any,
) -> None:
    tasks = by_variant(assert_compact_line(outputs["status"])["tasks"])
    assert set(tasks) == set(REAL_312_TASKS)
    for name, (capture, task_id) in REAL_312_TASKS.items():
        real = real_312(capture)["tasks"][task_id]
        assert variant(real) == name
        ours = as_3_1_2(tasks[name])
        assert key_tree(ours) == key_tree(real), name
        assert value_types(ours) == value_types(real), name
        # pueue 3 creates every task Locked and keeps that as prev_status.
        assert ours["prev_status"] == real["prev_status"] == "Locked", name


@only_v3
def test_v3_status_and_groups_have_the_layout_of_real_pueue_3_1_2(outputs: Any) -> None:
    real = real_312("status_killed_group.json")
    ours = assert_compact_line(outputs["status"])
    assert list(ours) == list(real) == ["tasks", "groups"]
    expected = real["groups"]["gpu0"]
    assert expected == {"status": "Paused", "parallel_tasks": 1}
    for group in ours["groups"].values():
        assert key_tree(group) == key_tree(expected)
        assert value_types(group) == value_types(expected)


@only_v3
def test_v3_log_entries_have_the_layout_of_real_pueue_3_1_2_in_each_state(outputs: Any) -> None:
    real = {variant(entry["task"]): entry for entry in real_312("log_all.json").values()}
    ours = {variant(entry["task"]): entry for entry in assert_compact_line(outputs["log"]).values()}
    shared = set(real) & set(ours)
    assert shared == {"Done/Success", "Done/Failed", "Done/FailedToSpawn", "Done/Killed"}
    for name in shared:
        entry = {**ours[name], "task": as_3_1_2(ours[name]["task"])}
        assert key_tree(entry) == key_tree(real[name]), name
        assert value_types(entry) == value_types(real[name]), name
        assert entry["task"]["envs"] == real[name]["task"]["envs"] == {}
    # A task that failed to spawn has no log file: pueue 3 says so in `output`.
    assert MISSING_LOG.fullmatch(real["Done/FailedToSpawn"]["output"])
    assert MISSING_LOG.fullmatch(ours["Done/FailedToSpawn"]["output"])


@only_v3
def test_v3_timestamps_are_written_like_real_pueue_3_1_2_except_utc_as_3_4_1_writes_it(
    outputs: Any,
) -> None:
    real = list(timestamps(real_312("status_after_plain_kill.json")))
    ours = list(timestamps(json.loads(outputs["status"])))
    assert len(real) >= 20 and len(ours) >= 30
    assert all(TIMESTAMP.match(stamp) for stamp in real + ours)
    assert all(re.search(r"\.\d{9}\+00:00$", stamp) for stamp in real)  # Linux: nanoseconds
    # chrono <= 0.4.26 (pueue 3.1.2, a UTC host) wrote a zero offset `+00:00`; the chrono
    # of 3.4.1, which the stand-in imitates, writes `Z` (see the TZ test above).
    assert {stamp[-6:] for stamp in real} == {"+00:00"}
    assert not any(stamp.endswith("+00:00") for stamp in ours)
