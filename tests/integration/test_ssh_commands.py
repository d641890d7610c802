"""HostConnection.run() against a real OpenSSH sshd: what each remote answer becomes."""

from __future__ import annotations

import asyncio
import shlex
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqi_es.adapters.ssh.connection import PREFERRED_CIPHER, HostConnection
from mqi_es.adapters.ssh.target import Connected, ConnectionState, SshTarget
from mqi_es.core.outcome import Ok, Outcome, RemoteFailure, Unknown
from tests.fixtures.sshd import HOST_ALIAS, Sshd, processes_with_argv, ssh_target


def run_on(server: Sshd, command: str, **options: object) -> Outcome:
    async def scenario() -> Outcome:
        async with HostConnection(ssh_target(server)) as node:
            return await node.run(command, **options)  # type: ignore[arg-type]

    return asyncio.run(scenario())


def wait_until_gone(argv: list[str]) -> list[int]:
    """Pids still running `argv` after up to 3 s (a killed process takes a moment to go)."""
    left = processes_with_argv(argv)
    for _ in range(150):
        if not left:
            break
        time.sleep(0.02)
        left = processes_with_argv(argv)
    return left


def test_exit_zero_is_ok_with_stdout_and_stderr(sshd: Sshd) -> None:
    assert run_on(sshd, "echo out; echo err >&2") == Ok("out\n", "err\n")


def test_exit_three_is_remote_failure_with_stderr(sshd: Sshd) -> None:
    outcome = run_on(sshd, "echo partial; echo 'no such group' >&2; exit 3")

    assert outcome == RemoteFailure(3, "no such group\n", "partial\n")


def test_input_reaches_the_command_stdin(sshd: Sshd) -> None:
    assert run_on(sshd, "wc -c", input="héllo") == Ok("6\n")


def test_undecodable_output_is_replaced_instead_of_raising(sshd: Sshd) -> None:
    assert run_on(sshd, r"printf 'ok\377\376'") == Ok("ok\ufffd\ufffd")


def test_tilde_means_the_remote_home(sshd: Sshd) -> None:
    assert run_on(sshd, "echo ~ ~/cases") == Ok(f"{sshd.home} {sshd.home}/cases\n")


@settings(max_examples=40)
@given(text=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0")))
def test_a_quoted_argument_arrives_exactly_as_sent(sshd: Sshd, text: str) -> None:
    assert run_on(sshd, f"printf '%s' {shlex.quote(text)}") == Ok(text)


def test_text_that_is_not_unicode_is_refused_before_sending(sshd: Sshd) -> None:
    surrogate = b"case-\xff".decode(errors="surrogateescape")

    with pytest.raises(ValueError, match="not valid UTF-8"):
        run_on(sshd, f"ls {shlex.quote(surrogate)}")


def test_hung_command_is_killed_on_the_node(sshd: Sshd) -> None:
    outcome = run_on(sshd, "sleep 317", timeout=0.5)

    assert outcome == Unknown("node1: remote command timed out after 0.5 s")
    assert wait_until_gone(["sleep", "317"]) == []


def test_command_ignoring_sigterm_is_killed_after_the_grace(sshd: Sshd) -> None:
    outcome = run_on(sshd, "trap '' TERM; sleep 318; echo survived", timeout=0.5)

    assert outcome == Unknown("node1: remote command timed out after 0.5 s")
    assert wait_until_gone(["sleep", "318"]) == []


def test_exit_124_before_the_limit_is_the_commands_own_failure(sshd: Sshd) -> None:
    assert run_on(sshd, "exit 124", timeout=30) == RemoteFailure(124, "")


def test_commands_share_one_connection_beyond_the_channel_limit(sshd: Sshd) -> None:
    logins_before = sshd.log_file.read_text().count("Accepted publickey")

    async def scenario() -> list[Outcome]:
        async with HostConnection(ssh_target(sshd)) as node:
            return await asyncio.gather(*(node.run(f"sleep 0.05; echo {i}") for i in range(25)))

    assert asyncio.run(scenario()) == [Ok(f"{i}\n") for i in range(25)]
    assert sshd.log_file.read_text().count("Accepted publickey") == logins_before + 1


def test_connected_state_names_the_preferred_cipher(sshd: Sshd) -> None:
    async def scenario() -> ConnectionState:
        async with HostConnection(ssh_target(sshd)) as node:
            await node.run("true")
            return node.state

    state = asyncio.run(scenario())

    assert isinstance(state, Connected)
    assert state.cipher == PREFERRED_CIPHER


def test_host_alias_is_resolved_from_the_openssh_client_config(sshd: Sshd) -> None:
    alias_only = SshTarget(
        name="alias", host=HOST_ALIAS, ssh_config=(sshd.ssh_config,), known_hosts=sshd.known_hosts
    )

    async def scenario() -> Outcome:
        async with HostConnection(alias_only) as node:
            return await node.run("echo $HOME")

    assert asyncio.run(scenario()) == Ok(f"{sshd.home}\n")
