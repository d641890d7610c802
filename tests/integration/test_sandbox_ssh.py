"""The sandbox node's SSH server, seen from a plain asyncssh client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncssh
import pytest

from mqi_es.sandbox import ThreadedSandboxNode
from tests.fixtures.sandbox import ssh_options, wait_until


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def connect(node: ThreadedSandboxNode, **extra: object) -> asyncssh.SSHClientConnection:
    return asyncssh.connect(node.host, node.port, **ssh_options(node, **extra))


def test_pueue_over_ssh_is_the_stand_in_and_answers_status(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    async def scenario() -> tuple[asyncssh.SSHCompletedProcess, asyncssh.SSHCompletedProcess]:
        async with connect(sandbox_node) as conn:
            return await conn.run("command -v pueue"), await conn.run("pueue status --json")

    which, status = asyncio.run(scenario())
    assert which.stdout == f"{sandbox_node.bin_dir / 'pueue'}\n"
    assert status.exit_status == 0
    assert set(json.loads(str(status.stdout))["groups"]) == {"default", "gpu0", "gpu1"}


def test_tilde_and_the_working_directory_are_the_sandbox_home(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    async def scenario() -> str:
        async with connect(sandbox_node) as conn:
            result = await conn.run("echo ~; pwd; mkdir -p ~/'case 1' && cd ~/'case 1' && pwd")
            return str(result.stdout)

    home = sandbox_node.home
    assert asyncio.run(scenario()) == f"{home}\n{home}\n{home / 'case 1'}\n"


def test_exit_status_signal_stdout_stderr_and_stdin_are_forwarded(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    async def scenario() -> list[asyncssh.SSHCompletedProcess]:
        async with connect(sandbox_node) as conn:
            return [
                await conn.run("echo out; echo err >&2; exit 3"),
                await conn.run("tr a-z A-Z", input="stdin reaches the command"),
                await conn.run("kill -TERM $$"),
            ]

    failed, piped, signalled = asyncio.run(scenario())
    assert (failed.exit_status, failed.stdout, failed.stderr) == (3, "out\n", "err\n")
    assert piped.stdout == "STDIN REACHES THE COMMAND"
    assert signalled.exit_signal is not None and signalled.exit_signal[0] == "TERM"


def test_sftp_resolves_relative_paths_in_the_home_and_absolute_paths_as_given(
    sandbox_node: ThreadedSandboxNode, tmp_path: Path
) -> None:
    payload = os.urandom(300_000)
    (tmp_path / "up.bin").write_bytes(payload)

    async def scenario() -> str:
        async with connect(sandbox_node) as conn, conn.start_sftp_client() as sftp:
            await sftp.mkdir("cases")
            await sftp.put(str(tmp_path / "up.bin"), "cases/up.bin")
            await sftp.get(str(sandbox_node.home / "cases" / "up.bin"), str(tmp_path / "down"))
            return await sftp.realpath(".")

    assert asyncio.run(scenario()) == str(sandbox_node.home)
    assert (sandbox_node.home / "cases" / "up.bin").read_bytes() == payload
    assert (tmp_path / "down").read_bytes() == payload


def test_the_server_offers_aes128_gcm_and_pins_its_host_key(
    sandbox_node: ThreadedSandboxNode, tmp_path: Path
) -> None:
    (tmp_path / "empty_known_hosts").write_text("")

    async def scenario() -> str:
        async with connect(sandbox_node, encryption_algs=["aes128-gcm@openssh.com"]) as conn:
            cipher = str(conn.get_extra_info("send_cipher"))
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await connect(sandbox_node, known_hosts=str(tmp_path / "empty_known_hosts"))
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(sandbox_node, client_keys=[], password="guess")
        return cipher

    assert asyncio.run(scenario()) == "aes128-gcm@openssh.com"
    known = sandbox_node.known_hosts.read_text()
    assert known.startswith(f"[127.0.0.1]:{sandbox_node.port} ssh-ed25519 ")


def test_connections_are_refused_after_stop_ssh_and_accepted_after_start_or_restart(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    port = sandbox_node.port
    sandbox_node.stop_ssh()

    async def refused() -> None:
        with pytest.raises(ConnectionRefusedError):
            await connect(sandbox_node)

    asyncio.run(refused())
    sandbox_node.start_ssh()

    async def accepted() -> int | None:
        async with connect(sandbox_node) as conn:
            return (await conn.run("true")).exit_status

    assert sandbox_node.port == port
    assert asyncio.run(accepted()) == 0
    sandbox_node.restart_ssh()
    assert sandbox_node.port == port
    assert asyncio.run(accepted()) == 0


def test_a_frozen_node_lets_connect_time_out_and_stalls_an_open_session(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    async def scenario() -> None:
        async with connect(sandbox_node) as conn:
            sandbox_node.freeze_ssh()
            with pytest.raises(TimeoutError):
                await connect(sandbox_node, connect_timeout=0.5)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.run("true"), 0.5)
            sandbox_node.thaw_ssh()
        async with connect(sandbox_node) as conn:
            assert (await conn.run("true")).exit_status == 0

    asyncio.run(scenario())


def test_an_upload_is_cut_after_n_bytes_and_succeeds_once_disarmed(
    sandbox_node: ThreadedSandboxNode, tmp_path: Path
) -> None:
    payload = os.urandom(2_000_000)
    (tmp_path / "big.bin").write_bytes(payload)

    async def upload() -> None:
        async with connect(sandbox_node) as conn, conn.start_sftp_client() as sftp:
            await sftp.put(str(tmp_path / "big.bin"), "big.bin")

    async def cut_upload() -> None:
        async with connect(sandbox_node) as conn, conn.start_sftp_client() as sftp:
            sandbox_node.cut_after(256 * 1024)
            await sftp.put(str(tmp_path / "big.bin"), "big.bin")

    with pytest.raises((OSError, asyncssh.Error)):
        asyncio.run(cut_upload())
    remote = sandbox_node.home / "big.bin"
    assert not remote.exists() or remote.stat().st_size < len(payload)
    sandbox_node.cut_after(None)
    asyncio.run(upload())
    assert remote.read_bytes() == payload


def test_a_client_that_goes_away_takes_its_remote_command_with_it(
    sandbox_node: ThreadedSandboxNode,
) -> None:
    async def scenario() -> int:
        async with connect(sandbox_node) as conn:
            process = await conn.create_process("echo $$; exec sleep 30")
            return int(await process.stdout.readline())

    pid = asyncio.run(scenario())
    wait_until(lambda: not alive(pid))
