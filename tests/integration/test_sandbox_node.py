"""Starting and stopping the whole sandbox node: no process survives it, state does."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh

from mqi_es.sandbox import ThreadedSandboxNode
from tests.fixtures.sandbox import wait_until


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def read_pid(path: Path) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text().strip()))


def pueue_ok(node: ThreadedSandboxNode, *args: str) -> str:
    completed = node.pueue(*args)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_stop_leaves_no_task_command_or_daemon_process_behind(tmp_path: Path) -> None:
    node = ThreadedSandboxNode(tmp_path / "node").start()
    try:
        daemon = node.daemon_pid
        assert daemon is not None
        task_pid, child_pid = tmp_path / "task.pid", tmp_path / "child.pid"
        pueue_ok(node, "add", "-g", "gpu0", "--", f"sleep 30 & echo $! > '{child_pid}'; wait")
        pueue_ok(node, "add", "-g", "gpu1", "--", f"echo $$ > '{task_pid}'; exec sleep 30")

        async def open_session() -> tuple[asyncssh.SSHClientConnection, int]:
            conn = await asyncssh.connect(
                node.host,
                node.port,
                username=node.user,
                client_keys=[str(node.key_file)],
                known_hosts=str(node.known_hosts),
            )
            process = await conn.create_process("echo $$; exec sleep 30")
            return conn, int(await process.stdout.readline())

        loop = asyncio.new_event_loop()
        conn, command_pid = loop.run_until_complete(open_session())
        pids = [daemon, read_pid(task_pid), read_pid(child_pid), command_pid]
        assert all(alive(pid) for pid in pids)
    finally:
        node.stop()
    node.stop()  # a second stop is harmless
    assert [pid for pid in pids if alive(pid)] == []
    conn.abort()
    loop.close()


def test_python_m_sandbox_prints_its_address_and_stops_everything_on_sigterm(
    tmp_path: Path,
) -> None:
    root = tmp_path / "node"
    process = subprocess.Popen(
        [sys.executable, "-m", "mqi_es.sandbox", "--root", str(root), "--groups", "gpu0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the node printed nothing within 60 s"
        assert process.stdout is not None
        summary: dict[str, Any] = json.loads(process.stdout.readline())
        assert summary["home"] == str(root / "home") and summary["groups"] == ["gpu0"]
        pid_file = tmp_path / "task.pid"

        async def submit() -> str:
            async with asyncssh.connect(
                summary["host"],
                summary["port"],
                username=summary["user"],
                client_keys=[summary["key_file"]],
                known_hosts=summary["known_hosts"],
            ) as conn:
                command = f"pueue add -p -g gpu0 -- 'echo $$ > {pid_file}; exec sleep 30'"
                result = await conn.run(command, check=True)
                return str(result.stdout)

        assert asyncio.run(submit()) == "0\n"
        task_pid = read_pid(pid_file)
        daemon_pid = int((Path(summary["pueue_dir"]) / "pueue.pid").read_text())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not alive(daemon_pid) and not alive(task_pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_node_restarted_on_the_same_root_keeps_its_tasks_and_host_key(
    tmp_path: Path,
) -> None:
    with ThreadedSandboxNode(tmp_path / "node") as node:
        pueue_ok(node, "add", "--", "true")
        wait_until(lambda: "Done" in node.status()["tasks"]["0"]["status"])
        host_key = node.known_hosts.read_text().split()[1:]
    with ThreadedSandboxNode(tmp_path / "node") as node:
        assert node.known_hosts.read_text().split()[1:] == host_key
        assert node.status()["tasks"]["0"]["status"]["Done"]["result"] == "Success"
        assert pueue_ok(node, "add", "-p", "--", "true") == "1\n"


def test_a_crashed_daemon_is_replaced_without_leaving_its_tasks_running(
    sandbox_node: ThreadedSandboxNode, tmp_path: Path
) -> None:
    pid_file = tmp_path / "task.pid"
    pueue_ok(sandbox_node, "add", "-g", "gpu0", "--", f"echo $$ > '{pid_file}'; exec sleep 30")
    task_pid = read_pid(pid_file)
    daemon_pid = sandbox_node.daemon_pid
    assert daemon_pid is not None
    os.kill(daemon_pid, signal.SIGKILL)
    wait_until(lambda: not alive(daemon_pid))
    assert alive(task_pid)
    sandbox_node.restart_pueue_daemon()
    assert not alive(task_pid)
    done = sandbox_node.status()["tasks"]["0"]["status"]["Done"]
    assert done["result"] == "Killed"


def test_a_second_pueued_on_the_same_socket_refuses_to_start_and_leaves_the_first_serving(
    tmp_path: Path,
) -> None:
    node = ThreadedSandboxNode(tmp_path / "node").start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "mqi_es.sandbox.pueued", "--pueue-dir", str(node.pueue_dir)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

        assert second.returncode == 1
        assert "a daemon already answers on" in second.stderr
        assert json.loads(pueue_ok(node, "status", "--json"))["groups"]
    finally:
        node.stop()
