"""The stand-in's ``pueue remove`` behaves as pueue's (daemon/network/message_handler/remove.rs):
queued and finished tasks go, running ones stay, and the answer names both (run locally)."""

from __future__ import annotations

from mqi_es.sandbox import ThreadedSandboxNode
from tests.fixtures.sandbox import wait_until


def add(node: ThreadedSandboxNode, *args: str) -> int:
    completed = node.pueue("add", "--print-task-id", *args)
    assert completed.returncode == 0, completed.stderr
    return int(completed.stdout)


def phase(node: ThreadedSandboxNode, task_id: int) -> str:
    return next(iter(node.status()["tasks"][str(task_id)]["status"]))


def test_remove_forgets_queued_and_finished_tasks_and_keeps_running_ones(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    finished = add(sandbox_node, "--group=gpu1", "--", "echo", "done")
    wait_until(lambda: phase(sandbox_node, finished) == "Done")
    running = add(sandbox_node, "--group=gpu0", "--", "sleep", "30")
    queued = add(sandbox_node, "--group=gpu0", "--", "true")  # gpu0 runs one task at a time
    wait_until(lambda: phase(sandbox_node, running) == "Running")

    answer = sandbox_node.pueue("remove", str(finished), str(running), str(queued), "42")

    assert answer.returncode == 0
    assert answer.stdout == (
        f"Tasks removed from list: {finished}, {queued}\n"
        f"The command failed for tasks: {running}, 42\n"
    )
    assert list(sandbox_node.status()["tasks"]) == [str(running)]
    assert phase(sandbox_node, running) == "Running"
    assert not (sandbox_node.pueue_dir / "task_logs" / f"{finished}.log").exists()


def test_removing_only_running_or_unknown_tasks_fails_with_pueues_message(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    running = add(sandbox_node, "--group=gpu0", "--", "sleep", "30")
    wait_until(lambda: phase(sandbox_node, running) == "Running")

    answer = sandbox_node.pueue("remove", str(running), "7")

    assert (answer.returncode, answer.stdout) == (1, "")
    assert answer.stderr == f"The command failed for tasks: {running}, 7\n"
    assert phase(sandbox_node, running) == "Running"


def test_remove_without_a_task_id_is_a_usage_error(sandbox_node: ThreadedSandboxNode) -> None:
    answer = sandbox_node.pueue("remove")

    assert answer.returncode == 2
    assert "the following required arguments were not provided" in answer.stderr
