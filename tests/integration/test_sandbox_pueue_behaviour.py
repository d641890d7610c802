"""The stand-in pueue behaves like pueue where this project depends on it (run locally).

Where a real, running pueue 3.1.2 was captured doing the same (``tests/data/pueue-samples/
real-3.1.2``), the stand-in's answers are compared with the capture.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mqi_es.sandbox import ThreadedSandboxNode
from tests.fixtures.sandbox import wait_until
from tests.samples import PUEUE_SAMPLES

SAMPLES = PUEUE_SAMPLES
REAL_312 = SAMPLES / "real-3.1.2"


def task(node: ThreadedSandboxNode, task_id: int) -> dict[str, Any]:
    result: dict[str, Any] = node.status()["tasks"][str(task_id)]
    return result


def state_of(node: ThreadedSandboxNode, task_id: int) -> str:
    """``Queued``, ``Running`` or ``Done/<result>`` of a task (v4 output)."""
    (name, body), *_ = task(node, task_id)["status"].items()
    if name != "Done":
        return str(name)
    result = body["result"]
    return f"Done/{result if isinstance(result, str) else next(iter(result))}"


def add(node: ThreadedSandboxNode, *args: str) -> int:
    completed = node.pueue("add", "--print-task-id", *args)
    assert completed.returncode == 0, completed.stderr
    return int(completed.stdout)


def wait_for_state(node: ThreadedSandboxNode, task_id: int, state: str) -> None:
    wait_until(lambda: state_of(node, task_id) == state)


def variant(task: dict[str, Any]) -> str:
    """``Queued``, ``Running`` or ``Done/<result>`` of a task in v3 or v4 output."""
    status = task["status"]
    if isinstance(status, str):
        return status
    (name, body), *_ = status.items()
    if name != "Done":
        return str(name)
    result = body.get("result", body) if isinstance(body, dict) else body
    return f"Done/{result if isinstance(result, str) else next(iter(result))}"


def real_312(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REAL_312 / name).read_text())
    return document


def group_statuses(status: dict[str, Any]) -> dict[str, str]:
    return {name: group["status"] for name, group in status["groups"].items()}


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """The keys of a task whose values differ (``envs`` is a map in HashMap order)."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_add_prints_the_id_with_print_task_id_and_pueues_sentence_without(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    assert sandbox_node.pueue("add", "-p", "--", "true").stdout == "0\n"
    sentence = sandbox_node.pueue("add", "--", "true").stdout
    assert sentence == "New task added (id 1).\n"
    live = (SAMPLES / "real" / "daviddwlee84__PueueWrapper__add_stdout_id68.txt").read_text()
    pattern = r"New task added \(id \d+\)\.\n"
    assert re.fullmatch(pattern, live.strip() + "\n") and re.fullmatch(pattern, sentence)


def test_the_command_words_are_joined_with_spaces_as_pueue_does(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    task_id = add(sandbox_node, "-g", "gpu1", "-l", "mqi:case:a1", "echo", "a  b", "-l", "x")
    details = task(sandbox_node, task_id)
    assert details["command"] == details["original_command"] == "echo a  b -l x"
    assert details["label"] == "mqi:case:a1" and details["group"] == "gpu1"
    wait_for_state(sandbox_node, task_id, "Done/Success")
    log = json.loads(sandbox_node.pueue("log", "--json", str(task_id)).stdout)
    assert log[str(task_id)]["output"] == "a b -l x"


def test_each_gpu_group_runs_one_task_while_the_next_stays_queued(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    first = add(sandbox_node, "-g", "gpu0", "--", "sleep", "30")
    second = add(sandbox_node, "-g", "gpu0", "--", "true")
    wait_for_state(sandbox_node, first, "Running")
    elsewhere = add(sandbox_node, "-g", "gpu1", "--", "true")
    wait_for_state(sandbox_node, elsewhere, "Done/Success")
    assert state_of(sandbox_node, second) == "Queued"
    assert sandbox_node.pueue("kill", str(first)).stdout == f"Tasks are being killed: {first}\n"
    wait_for_state(sandbox_node, second, "Done/Success")
    assert state_of(sandbox_node, first) == "Done/Killed"


def test_a_group_with_parallel_zero_runs_every_task_at_once(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    assert sandbox_node.pueue("group", "add", "wide", "--parallel", "0").returncode == 0
    ids = [add(sandbox_node, "-g", "wide", "--", "sleep", "30") for _ in range(3)]
    for task_id in ids:
        wait_for_state(sandbox_node, task_id, "Running")
    workers = {task(sandbox_node, i)["envs"]["PUEUE_WORKER_ID"] for i in ids}
    assert workers == {"0", "1", "2"}


def test_results_are_success_failed_with_the_code_and_failed_to_spawn(
    sandbox_node: ThreadedSandboxNode, tmp_path: Path
) -> None:
    success = add(sandbox_node, "--", "true")
    failed = add(sandbox_node, "--", "echo", "broken", ";", "exit", "2")
    unspawned = add(sandbox_node, "-w", str(tmp_path / "no such dir"), "--", "true")
    wait_for_state(sandbox_node, unspawned, "Done/FailedToSpawn")
    assert state_of(sandbox_node, success) == "Done/Success"
    done = task(sandbox_node, failed)["status"]["Done"]
    assert done["result"] == {"Failed": 2}
    message = task(sandbox_node, unspawned)["status"]["Done"]["result"]["FailedToSpawn"]
    assert message == (
        f"Failed to spawn child {unspawned} with err: "
        'Os { code: 2, kind: NotFound, message: "No such file or directory" }'
    )
    log = json.loads(sandbox_node.pueue("log", "--json").stdout)
    assert log[str(failed)]["output"] == "broken"


def test_kill_kills_the_whole_process_group_and_marks_the_task_killed(
    sandbox_node: ThreadedSandboxNode, tmp_path: Path
) -> None:
    child_pid_file = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > '{child_pid_file}'; wait"
    task_id = add(sandbox_node, "-g", "gpu0", "--", script)
    child_pid = int(wait_until(lambda: child_pid_file.exists() and child_pid_file.read_text()))
    assert alive(child_pid)
    assert sandbox_node.pueue("kill", str(task_id)).returncode == 0
    wait_for_state(sandbox_node, task_id, "Done/Killed")
    wait_until(lambda: not alive(child_pid))


def test_kill_of_a_task_that_is_not_running_fails_with_pueues_message(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    task_id = add(sandbox_node, "--", "true")
    wait_for_state(sandbox_node, task_id, "Done/Success")
    completed = sandbox_node.pueue("kill", str(task_id), "42")
    assert completed.returncode == 1
    assert completed.stderr == f"The command failed for tasks: {task_id}, 42\n"


def test_ids_come_back_after_clean_because_pueue_takes_the_highest_plus_one(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    add(sandbox_node, "-g", "gpu0", "--", "true")
    running = add(sandbox_node, "-g", "gpu1", "--", "sleep", "30")
    last = add(sandbox_node, "-g", "gpu0", "--", "true")
    wait_for_state(sandbox_node, last, "Done/Success")
    wait_for_state(sandbox_node, running, "Running")
    cleaned = sandbox_node.pueue("clean")
    assert cleaned.stdout == "All finished tasks have been removed\n"
    assert list(sandbox_node.status()["tasks"]) == [str(running)]
    assert add(sandbox_node, "--", "true") == running + 1 == last


def test_reset_kills_and_forgets_every_task_and_ids_start_again_at_zero(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    running = add(sandbox_node, "-g", "gpu0", "--", "sleep", "30")
    wait_for_state(sandbox_node, running, "Running")
    add(sandbox_node, "-g", "gpu0", "--", "true")
    assert sandbox_node.pueue("reset", "--force").returncode == 0
    assert sandbox_node.status()["tasks"] == {}
    assert add(sandbox_node, "--", "true") == 0


def test_daemon_restart_kills_running_tasks_and_pauses_groups_with_queued_tasks(
    sandbox_node: ThreadedSandboxNode, tmp_path: Path
) -> None:
    pid_file = tmp_path / "task.pid"
    running = add(sandbox_node, "-g", "gpu0", "--", f"echo $$ > '{pid_file}'; exec sleep 30")
    queued = add(sandbox_node, "-g", "gpu0", "--", "true")
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    sandbox_node.restart_pueue_daemon()
    assert not alive(pid)
    assert state_of(sandbox_node, running) == "Done/Killed"
    assert state_of(sandbox_node, queued) == "Queued"
    groups = sandbox_node.status()["groups"]
    assert {name: group["status"] for name, group in groups.items()} == {
        "default": "Running",
        "gpu0": "Paused",
        "gpu1": "Running",
    }
    added = sandbox_node.pueue("add", "-g", "gpu0", "--", "true").stdout
    assert added.endswith("\nThe group of this task is currently paused!\n")
    resumed = sandbox_node.pueue("start", "-g", "gpu0")
    assert resumed.stdout == 'Group "gpu0" is being resumed.\n'
    wait_for_state(sandbox_node, queued, "Done/Success")


@pytest.mark.parametrize("dialect", ["v4", "v3"])
def test_every_command_fails_with_did_you_start_it_while_the_daemon_is_down(
    sandbox_node_factory: Any, dialect: str
) -> None:
    node = sandbox_node_factory(status_format=dialect)
    node.stop_pueue_daemon()
    for args in (["status", "--json"], ["add", "-p", "--", "true"], ["kill", "0"], ["log"]):
        completed = node.pueue(*args)
        assert completed.returncode == 1, args
        assert completed.stdout == ""
        assert "while connecting to daemon. Did you start it?:" in completed.stderr
        assert "No such file or directory (os error 2)" in completed.stderr
    node.start_pueue_daemon()
    assert node.pueue("status", "--json").returncode == 0


def test_status_switches_give_garbage_or_a_truncated_answer_and_back(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    add(sandbox_node, "--", "true")
    wait_for_state(sandbox_node, 0, "Done/Success")
    normal = subprocess.run(
        [str(sandbox_node.bin_dir / "pueue"), "status", "--json"],
        env=sandbox_node.client_env(),
        capture_output=True,
        check=True,
    ).stdout
    for mode in ("garbage", "truncated"):
        sandbox_node.set_fault(status_output=mode)
        corrupted = subprocess.run(
            [str(sandbox_node.bin_dir / "pueue"), "status", "--json"],
            env=sandbox_node.client_env(),
            capture_output=True,
            check=True,
        ).stdout
        with pytest.raises(ValueError):
            json.loads(corrupted)
        if mode == "truncated":
            assert 0 < len(corrupted) < len(normal) and normal.startswith(corrupted)
    sandbox_node.set_fault()
    assert json.loads(sandbox_node.pueue("status", "--json").stdout)["tasks"]["0"]


def test_a_slow_daemon_keeps_status_hanging_while_other_commands_answer(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    sandbox_node.set_fault(delay_seconds=30, delay_only_status=True)
    pueue = sandbox_node.bin_dir / "pueue"
    hung = subprocess.run(
        ["timeout", "0.5", str(pueue), "status", "--json"],
        env=sandbox_node.client_env(),
        capture_output=True,
        check=False,
    )
    assert hung.returncode == 124 and hung.stdout == b""
    assert sandbox_node.pueue("group", "--json").returncode == 0


def test_a_task_records_and_receives_the_environment_of_the_add_client(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    environment = {
        "HOME": str(sandbox_node.home),
        "PATH": f"{sandbox_node.bin_dir}:/usr/bin:/bin",
        "MQI_PROBE": "42 and more",
    }
    completed = sandbox_node.pueue(
        "add",
        "-p",
        "-g",
        "gpu1",
        "--",
        'echo "$MQI_PROBE|$PUEUE_GROUP|$PUEUE_WORKER_ID"',
        env=environment,
    )
    task_id = int(completed.stdout)
    wait_for_state(sandbox_node, task_id, "Done/Success")
    envs = task(sandbox_node, task_id)["envs"]
    assert envs["MQI_PROBE"] == "42 and more"
    assert envs["PUEUE_GROUP"] == "gpu1" and envs["PUEUE_WORKER_ID"] == "0"
    # Exactly the caller's variables: nothing Python adds at start-up (LC_CTYPE under the
    # C locale); PWD is exported by the launcher's shell, as a login shell would.
    assert set(envs) - {"PUEUE_GROUP", "PUEUE_WORKER_ID", "PWD"} == set(environment)
    log = json.loads(sandbox_node.pueue("log", "--json", str(task_id)).stdout)
    assert log[str(task_id)]["output"] == "42 and more|gpu1|0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--bogus"], "error: unexpected argument '--bogus' found"),
        (
            ["add", "-p"],
            "error: the following required arguments were not provided:\n  <COMMAND>...",
        ),
        (["frobnicate"], "error: unrecognized subcommand 'frobnicate'"),
        (["kill", "one"], "error: invalid value 'one' for '[TASK_IDS]...'"),
        (["log", "--lines"], "error: a value is required for '--lines <LINES>'"),
    ],
)
def test_a_bad_command_line_exits_2_with_claps_message(
    sandbox_node: ThreadedSandboxNode, args: list[str], message: str
) -> None:
    completed = sandbox_node.pueue(*args)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.startswith(message)
    assert completed.stderr.endswith("For more information, try '--help'.\n")


def test_killing_a_group_pauses_it_and_start_with_an_id_forces_a_queued_task(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    running = add(sandbox_node, "-g", "gpu0", "--", "sleep", "30")
    wait_for_state(sandbox_node, running, "Running")
    killed = sandbox_node.pueue("kill", "-g", "gpu0").stdout
    assert killed == (
        'All tasks of group "gpu0" are being killed. The group will also be paused!!!\n'
    )
    wait_for_state(sandbox_node, running, "Done/Killed")
    added = sandbox_node.pueue("add", "-g", "gpu0", "--", "true")
    assert added.stdout == f"New task added (id {running + 1}).\n" + (
        "The group of this task is currently paused!\n"
    )
    forced = sandbox_node.pueue("start", str(running + 1))
    assert forced.stdout == f"Tasks have been started/resumed: {running + 1}\n"
    wait_for_state(sandbox_node, running + 1, "Done/Success")
    assert sandbox_node.status()["groups"]["gpu0"]["status"] == "Paused"


@pytest.mark.parametrize(("dialect", "version"), [("v4", "4.0.4"), ("v3", "3.4.1")])
def test_version_and_help_are_answered_without_the_daemon(
    sandbox_node_factory: Any, dialect: str, version: str
) -> None:
    node = sandbox_node_factory(status_format=dialect)
    node.stop_pueue_daemon()
    assert node.pueue("--version").stdout == f"pueue {version}\n"
    helped = node.pueue("add", "--help")
    assert helped.returncode == 0
    assert "Usage: pueue add [OPTIONS] <COMMAND>..." in helped.stdout


def test_group_add_refuses_an_existing_group_and_parallel_changes_the_limit(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    existing = sandbox_node.pueue("group", "add", "gpu0")
    assert existing.returncode == 1 and existing.stderr == 'Group "gpu0" already exists\n'
    created = sandbox_node.pueue("group", "add", "gpu7", "-p", "2")
    assert created.stdout == 'New group "gpu7" has been created\n'
    assert sandbox_node.pueue("parallel", "3", "-g", "gpu7").returncode == 0
    groups = json.loads(sandbox_node.pueue("group", "--json").stdout)
    assert groups["gpu7"] == {"status": "Running", "parallel_tasks": 3}
    unknown = sandbox_node.pueue("add", "-g", "gpu9", "--", "true")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("Group gpu9 doesn't exists. Use one of these: [")


def test_the_node_files_are_private_to_their_owner(sandbox_node: ThreadedSandboxNode) -> None:
    root = sandbox_node.home.parent
    for folder in (root, sandbox_node.home, sandbox_node.pueue_dir, sandbox_node.bin_dir):
        assert folder.stat().st_mode & 0o077 == 0, folder
    for private in (sandbox_node.key_file, sandbox_node.pueue_dir / "state.json"):
        assert private.stat().st_mode & 0o777 == 0o600, private
    assert os.access(sandbox_node.bin_dir / "pueue", os.X_OK)


@pytest.mark.parametrize("dialect", ["v3", "v4"])
def test_a_daemon_killed_hard_reports_its_running_task_killed_and_leaves_it_running(
    sandbox_node_factory: Any, tmp_path: Path, dialect: str
) -> None:
    # real-3.1.2: status_before_daemon_kill9 -> `kill -9` of pueued, `pueued -d` ->
    # status_after_daemon_restart. Only the task's status changed (3.1.2 left "end" null),
    # no group was paused (nothing was queued), and the task's process ran on.
    real_before = real_312("status_before_daemon_kill9.json")
    real_after = real_312("status_after_daemon_restart.json")
    real_task = real_after["tasks"]["7"]
    assert changed_keys(real_before["tasks"]["7"], real_task) == {"status"}
    assert (variant(real_task), real_task["end"]) == ("Done/Killed", None)
    assert group_statuses(real_after) == group_statuses(real_before)
    assert group_statuses(real_after) == {"default": "Running", "gpu0": "Running"}

    node = sandbox_node_factory(groups=("gpu0",), status_format=dialect)
    pid_file = tmp_path / "task.pid"
    script = f"echo $$ > '{pid_file}'; exec sleep 30"
    task_id = add(node, "-g", "gpu0", "-l", "survivor", "--", script)
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text()))
    before = node.status()
    assert variant(before["tasks"][str(task_id)]) == "Running"

    node.crash_pueue_daemon()
    node.start_pueue_daemon()
    after = node.status()

    task_after = after["tasks"][str(task_id)]
    assert variant(task_after) == "Done/Killed"
    assert alive(pid)  # pueue lost the task, not its process
    assert group_statuses(after) == group_statuses(real_after)
    if dialect == "v3":
        assert changed_keys(before["tasks"][str(task_id)], task_after) == {"status"}
        assert task_after["end"] is None
    else:  # pueue 4 stamps the restart time as the end
        running = before["tasks"][str(task_id)]["status"]["Running"]
        done = task_after["status"]["Done"]
        assert (done["enqueued_at"], done["start"]) == (running["enqueued_at"], running["start"])
        assert done["end"] >= done["start"]
    node.restart_pueue_daemon()  # a service manager's restart stops what was left running
    assert not alive(pid)


@pytest.mark.parametrize("dialect", ["v3", "v4"])
def test_a_daemon_killed_hard_pauses_the_group_whose_task_waits_until_it_is_started(
    sandbox_node_factory: Any, dialect: str
) -> None:
    # real-3.1.2: status_restart2_before -> `kill -9`, `pueued -d` -> status_restart2_after
    # -> `pueue start -g gpu0` -> status_restart2_after_start.
    real = [real_312(f"status_restart2_{step}.json") for step in ("before", "after", "after_start")]
    node = sandbox_node_factory(groups=("gpu0",), status_format=dialect)
    running = add(node, "-g", "gpu0", "-l", "long", "--", "sleep 30; echo survived")
    waiting = add(node, "-g", "gpu0", "-l", "waiting", "--", "echo second")
    wait_until(lambda: variant(node.status()["tasks"][str(running)]) == "Running")
    before = node.status()

    node.crash_pueue_daemon()
    node.start_pueue_daemon()
    after = node.status()
    resumed = node.pueue("start", "-g", "gpu0")
    wait_until(lambda: variant(node.status()["tasks"][str(waiting)]) == "Done/Success")
    started = node.status()

    for ours, theirs in zip((before, after, started), real, strict=True):
        assert group_statuses(ours) == group_statuses(theirs)
        assert {key: (variant(task), task["label"]) for key, task in ours["tasks"].items()} == {
            key: (variant(task), task["label"]) for key, task in theirs["tasks"].items()
        }
    assert after["groups"]["gpu0"]["status"] == "Paused"
    assert resumed.stdout == 'Group "gpu0" is being resumed.\n'
    if dialect == "v3":
        assert after["tasks"]["0"]["end"] is None
        assert real[1]["tasks"]["0"]["end"] is None
