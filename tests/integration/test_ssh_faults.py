"""HostConnection when the node is down, hangs, drops us, or cannot be trusted."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path

import pytest

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.target import ConfigProblem, Connected, ConnectionState, Reconnecting
from mqi_es.core.outcome import Ok, Outcome, Unknown
from tests.fixtures.sshd import Sshd, processes_with_argv, ssh_target


def new_key(folder: Path) -> Path:
    key = folder / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    return key


async def eventually_running(argv: list[str]) -> None:
    """Wait (up to 5 s) until a process with `argv` runs."""
    for _ in range(250):
        if processes_with_argv(argv):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{argv} never started")


def test_stopped_sshd_is_unknown_connection_refused(private_sshd: Sshd) -> None:
    private_sshd.stop()

    async def scenario() -> tuple[Outcome, ConnectionState]:
        async with HostConnection(ssh_target(private_sshd)) as node:
            return await node.run("true"), node.state

    outcome, state = asyncio.run(scenario())

    assert outcome == Unknown("node1 unreachable: connection refused")
    assert isinstance(state, Reconnecting)
    assert state.last_error == "connection refused"


def test_frozen_sshd_is_unknown_after_the_connect_timeout(private_sshd: Sshd) -> None:
    private_sshd.freeze()
    hanging = ssh_target(private_sshd, connect_timeout=0.5, login_timeout=0.5)

    async def scenario() -> Outcome:
        async with HostConnection(hanging) as node:
            return await node.run("true")

    assert asyncio.run(scenario()) == Unknown("node1 unreachable: timed out")


def test_node_freezing_under_an_open_connection_is_unknown(private_sshd: Sshd) -> None:
    watched = ssh_target(private_sshd, keepalive_interval=0.3, keepalive_count_max=2)

    async def scenario() -> tuple[Outcome, Outcome, ConnectionState]:
        async with HostConnection(watched) as node:
            before = await node.run("true")
            private_sshd.freeze()
            during = await node.run("echo never", timeout=5)
            return before, during, node.state

    before, during, state = asyncio.run(scenario())

    assert before == Ok("")
    assert isinstance(during, Unknown)
    assert isinstance(state, Reconnecting)


def test_connection_killed_during_a_command_is_unknown(private_sshd: Sshd) -> None:
    async def scenario() -> Outcome:
        async with HostConnection(ssh_target(private_sshd)) as node:
            running = asyncio.create_task(node.run("sleep 319; echo done"))
            await eventually_running(["sleep", "319"])
            assert private_sshd.kill_sessions() > 0
            return await running

    outcome = asyncio.run(scenario())

    assert isinstance(outcome, Unknown)
    assert "connection lost" in outcome.reason


def test_reconnects_after_sshd_restart(private_sshd: Sshd) -> None:
    async def scenario() -> list[object]:
        async with HostConnection(ssh_target(private_sshd), rand=lambda: 0.0) as node:
            first = await node.run("echo up")
            private_sshd.stop()
            down = await node.run("echo down")
            state_down = node.state
            private_sshd.start()
            back = await node.run("echo back")
            return [first, down, state_down, back, node.state]

    first, down, state_down, back, state_back = asyncio.run(scenario())

    assert first == Ok("up\n")
    assert isinstance(down, Unknown)
    assert isinstance(state_down, Reconnecting)
    assert back == Ok("back\n")
    assert isinstance(state_back, Connected)


def test_backoff_blocks_attempts_until_the_next_attempt_is_due(private_sshd: Sshd) -> None:
    now = [100.0]
    private_sshd.stop()

    async def scenario() -> list[object]:
        target = ssh_target(private_sshd, backoff_cap=8.0)
        async with HostConnection(target, rand=lambda: 1.0, clock=lambda: now[0]) as node:
            refused = await node.run("true")
            failures_after_one = node.state
            private_sshd.start()
            still_waiting = await node.run("true")
            now[0] += 1.0  # the first retry is due after 1 s (rand 1.0: the full ceiling)
            due = await node.run("echo due")
            return [refused, failures_after_one, still_waiting, due]

    refused, state, still_waiting, due = asyncio.run(scenario())

    assert refused == Unknown("node1 unreachable: connection refused")
    assert isinstance(state, Reconnecting)
    assert state.failures == 1
    assert still_waiting == Unknown("node1 unreachable: connection refused (next attempt in 1 s)")
    assert due == Ok("due\n")


def test_unknown_host_key_is_a_config_problem_not_retried(
    private_sshd: Sshd, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    untrusting = ssh_target(private_sshd, known_hosts=empty)

    async def scenario() -> list[object]:
        async with HostConnection(untrusting) as node:
            first = await node.run("true")
            state = node.state
            private_sshd.stop()  # another attempt would now say "connection refused"
            second = await node.run("true")
            private_sshd.start()
            empty.write_text(private_sshd.known_hosts.read_text())  # the operator's fix
            fixed = await node.run("echo trusted")
            return [first, state, second, fixed]

    first, state, second, fixed = asyncio.run(scenario())

    assert isinstance(first, Unknown)
    assert "is not in known_hosts" in first.reason
    assert "ssh-keyscan -p" in first.reason
    assert "trust_on_first_use" in first.reason
    assert state == ConfigProblem(first.reason)
    assert second == first
    assert fixed == Ok("trusted\n")


def test_changed_host_key_is_refused_even_with_trust_on_first_use(
    private_sshd: Sshd, tmp_path: Path
) -> None:
    impostor = new_key(tmp_path).with_suffix(".pub").read_text().split()[:2]
    known_hosts = tmp_path / "known_hosts"
    recorded = f"[{private_sshd.host}]:{private_sshd.port} {' '.join(impostor)}\n"
    known_hosts.write_text(recorded)
    trusting = ssh_target(private_sshd, known_hosts=known_hosts, trust_on_first_use=True)

    async def scenario() -> tuple[Outcome, ConnectionState]:
        async with HostConnection(trusting) as node:
            return await node.run("true"), node.state

    outcome, state = asyncio.run(scenario())

    assert isinstance(outcome, Unknown)
    assert "does NOT match" in outcome.reason
    assert isinstance(state, ConfigProblem)
    assert known_hosts.read_text() == recorded


def test_trust_on_first_use_records_the_key_and_warns(
    private_sshd: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known_hosts = tmp_path / "new" / "known_hosts"
    trusting = ssh_target(private_sshd, known_hosts=known_hosts, trust_on_first_use=True)
    strict = ssh_target(private_sshd, known_hosts=known_hosts)

    async def scenario() -> tuple[Outcome, Outcome]:
        async with HostConnection(trusting) as node:
            first = await node.run("echo first")
        async with HostConnection(strict) as node:
            return first, await node.run("echo again")

    with caplog.at_level(logging.WARNING, logger="mqi_es.adapters.ssh.connection"):
        first, again = asyncio.run(scenario())

    assert (first, again) == (Ok("first\n"), Ok("again\n"))
    assert known_hosts.read_text() == private_sshd.known_hosts.read_text()
    assert known_hosts.stat().st_mode & 0o077 == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("on first use" in w and "SHA256:" in w for w in warnings)


def test_key_the_node_does_not_accept_is_a_config_problem(
    private_sshd: Sshd, tmp_path: Path
) -> None:
    stranger = ssh_target(private_sshd, key_file=new_key(tmp_path))

    async def scenario() -> ConnectionState:
        async with HostConnection(stranger) as node:
            await node.run("true")
            return node.state

    state = asyncio.run(scenario())

    assert isinstance(state, ConfigProblem)
    assert "refused our key" in state.message


@pytest.mark.parametrize(
    ("setting", "message"),
    [("key_file", "is missing or unreadable"), ("known_hosts", "does not exist")],
)
def test_missing_file_is_a_config_problem(
    private_sshd: Sshd, tmp_path: Path, setting: str, message: str
) -> None:
    misconfigured = ssh_target(private_sshd, **{setting: tmp_path / "absent"})

    async def scenario() -> ConnectionState:
        async with HostConnection(misconfigured) as node:
            await node.run("true")
            return node.state

    state = asyncio.run(scenario())

    assert isinstance(state, ConfigProblem)
    assert message in state.message
