"""``SandboxNode``: a GPU node without an HPC, on 127.0.0.1.

One object starts and stops the whole node: the stand-in pueue daemon (its own process),
the asyncssh server running real commands and SFTP, and the TCP gate in front of it that
injects network faults. Everything it creates stays under ``root`` with owner-only
permissions; ``stop()`` leaves no process behind (SSH commands, tasks, daemon).

    async with SandboxNode(tmp_path / "node", groups=("gpu0", "gpu1")) as node:
        async with asyncssh.connect(node.host, node.port, username=node.user,
                                    client_keys=[node.key_file],
                                    known_hosts=str(node.known_hosts)) as conn:
            await conn.run("pueue status --json")
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import asyncssh

from mqi_es.sandbox.cli_args import parse_request
from mqi_es.sandbox.dialect import Dialect, write_dialect
from mqi_es.sandbox.faults import PueueFaults, StatusOutput, write_faults
from mqi_es.sandbox.gate import TcpGate
from mqi_es.sandbox.layout import PUEUE_DIR_ENV, NodeLayout, PueueFiles
from mqi_es.sandbox.procs import kill_recorded_groups
from mqi_es.sandbox.protocol import DaemonGone, Reply, Request, connect, short_socket_path
from mqi_es.sandbox.ssh_server import CommandRunner, NodeKeys, start_ssh_server

DAEMON_START_SECONDS = 20.0
DAEMON_STOP_SECONDS = 15.0


class SandboxError(RuntimeError):
    """Raised when the sandbox node cannot be started or controlled as asked."""


class SandboxNode:
    """The sandbox GPU node: stand-in pueue + SSH server, started and stopped together.

    :param root: folder holding everything the node creates (created if missing).
    :param groups: pueue groups to create, each with ``parallel_tasks`` 1 (one GPU each),
        besides pueue's own ``default`` group.
    :param status_format: ``"v4"`` (pueue 4.0.4, default) or ``"v3"`` (pueue 3.4.1).
    :param port: SSH port on 127.0.0.1; 0 picks a free one (kept across ``start_ssh``).
    :param user: the SSH user name; defaults to the local user.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        *,
        groups: Sequence[str] = ("gpu0", "gpu1"),
        status_format: Dialect = "v4",
        port: int = 0,
        user: str | None = None,
    ) -> None:
        self.layout = NodeLayout(Path(root).absolute())
        self.groups = tuple(groups)
        self.status_format: Dialect = status_format
        self.user = user or getpass.getuser()
        self.port = port
        self._keys = NodeKeys(self.layout.ssh)
        self._runner = CommandRunner(self.layout.home, self.layout.bin, self.user)
        self._daemon: asyncio.subprocess.Process | None = None
        self._ssh: asyncssh.SSHAcceptor | None = None
        self._gate: TcpGate | None = None

    # -- where things are -----------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.layout.home

    @property
    def bin_dir(self) -> Path:
        return self.layout.bin

    @property
    def pueue_dir(self) -> Path:
        return self.layout.pueue.directory

    @property
    def pueue_files(self) -> PueueFiles:
        return self.layout.pueue

    @property
    def key_file(self) -> Path:
        return self._keys.client_key_file

    @property
    def known_hosts(self) -> Path:
        return self._keys.known_hosts

    @property
    def daemon_pid(self) -> int | None:
        """The pid of the pueue daemon while it runs."""
        if self._daemon is None or self._daemon.returncode is not None:
            return None
        return self._daemon.pid

    def client_env(self, **extra: str) -> dict[str, str]:
        """A minimal environment to run the node's ``pueue`` locally (tests, scripts)."""
        return {
            "HOME": str(self.home),
            "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            PUEUE_DIR_ENV: str(self.pueue_dir),
            **extra,
        }

    def summary(self) -> dict[str, object]:
        """Host, port and paths, as ``python -m mqi_es.sandbox`` prints them."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.key_file),
            "known_hosts": str(self.known_hosts),
            "root": str(self.layout.root),
            "home": str(self.home),
            "bin_dir": str(self.bin_dir),
            "pueue_dir": str(self.pueue_dir),
            "status_format": self.status_format,
            "groups": list(self.groups),
        }

    # -- life cycle -----------------------------------------------------------------------

    async def __aenter__(self) -> SandboxNode:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> SandboxNode:
        """Create the layout and keys, start the daemon, create the groups, open SSH.

        :raises SandboxError: if the daemon does not come up; nothing is left running.
        """
        try:
            self.layout.create()
            self.layout.write_launcher()
            write_dialect(self.pueue_files.settings, self.status_format)
            host_key, client_key = self._keys.ensure()
            await self.start_pueue_daemon()
            await self._ensure_groups()
            self._ssh = await start_ssh_server(
                home=self.home,
                runner=self._runner,
                user=self.user,
                host_key=host_key,
                client_key=client_key,
            )
            self._gate = TcpGate(self._ssh.get_port(), host=self.host)
            self.port = await self._gate.open(self.port)
            self._keys.write_known_hosts(self.host, self.port, host_key)
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Close SSH, kill every command and task, stop the daemon. Safe to call twice."""
        if self._gate is not None:
            await self._gate.close()
            self._gate = None
        if self._ssh is not None:
            self._ssh.close()
            await self._ssh.wait_closed()
            self._ssh = None
        await self._runner.close()
        await self.stop_pueue_daemon()

    # -- pueue daemon ---------------------------------------------------------------------

    async def start_pueue_daemon(self) -> None:
        """Start the daemon and wait until it answers on its socket.

        :raises SandboxError: if it is already running, exits or does not answer in time.
        """
        if self.daemon_pid is not None:
            raise SandboxError("the pueue daemon is already running")
        descriptor = os.open(
            self.pueue_files.daemon_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        try:
            self._daemon = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",
                "-m",
                "mqi_es.sandbox.pueued",
                "--pueue-dir",
                str(self.pueue_dir),
                "--parent-pid",
                str(os.getpid()),
                stdin=subprocess.DEVNULL,
                stdout=descriptor,
                stderr=descriptor,
                cwd=self.pueue_dir,
                start_new_session=True,
            )
        finally:
            os.close(descriptor)
        await self._wait_for_daemon(self._daemon)

    async def stop_pueue_daemon(self) -> None:
        """Stop the daemon as a service manager would (SIGTERM, then SIGKILL).

        The daemon kills its tasks on the way out; any task process group it could not
        deal with (killed hard), and tasks left orphaned by ``crash_pueue_daemon``, are
        killed here, as a service manager that stops the unit's whole cgroup would.
        """
        daemon, self._daemon = self._daemon, None
        if daemon is not None and daemon.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                daemon.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(daemon.wait(), DAEMON_STOP_SECONDS)
            except TimeoutError:
                daemon.kill()
                await daemon.wait()
        kill_recorded_groups(self.pueue_files.process_groups)

    async def restart_pueue_daemon(self) -> None:
        await self.stop_pueue_daemon()
        await self.start_pueue_daemon()

    async def crash_pueue_daemon(self) -> None:
        """SIGKILL the daemon, like ``kill -9`` of pueued: nothing is cleaned up.

        Its running tasks keep running, orphaned, as pueue's do, and its socket file stays.
        ``start_pueue_daemon`` then starts a daemon that reports them Done/Killed and leaves
        them running (what a real pueued 3.1.2 did); ``restart_pueue_daemon`` and ``stop``
        kill them.

        :raises SandboxError: if the daemon is not running.
        """
        daemon, self._daemon = self._daemon, None
        if daemon is None or daemon.returncode is not None:
            raise SandboxError("the pueue daemon is not running")
        with contextlib.suppress(ProcessLookupError):
            daemon.kill()
        await daemon.wait()

    def set_fault(
        self,
        *,
        status_output: StatusOutput = "normal",
        delay_seconds: float = 0.0,
        delay_only_status: bool = False,
    ) -> None:
        """Switch the daemon's faults; with no arguments, switch them all off."""
        write_faults(
            self.pueue_files.faults,
            PueueFaults(status_output, delay_seconds, delay_only_status),
        )

    async def _wait_for_daemon(self, daemon: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DAEMON_START_SECONDS
        while loop.time() < deadline:
            if daemon.returncode is not None:
                raise SandboxError(
                    f"the pueue daemon exited with status {daemon.returncode}; "
                    f"see {self.pueue_files.daemon_log}"
                )
            try:
                connect(self.pueue_files.socket).close()
            except OSError:
                await asyncio.sleep(0.02)
            else:
                return
        raise SandboxError(f"the pueue daemon did not answer within {DAEMON_START_SECONDS} s")

    async def _ensure_groups(self) -> None:
        reply = await _ask(self.pueue_files.socket, parse_request(["group", "--json"]))
        existing = json.loads(reply.stdout)
        for group in self.groups:
            if group in existing:
                continue
            request = parse_request(["group", "add", group, "--parallel", "1"])
            reply = await _ask(self.pueue_files.socket, request)
            if reply.code != 0:
                raise SandboxError(f"cannot create pueue group {group!r}: {reply.stderr.strip()}")

    # -- SSH faults -----------------------------------------------------------------------

    async def stop_ssh(self) -> None:
        """Close the SSH port (connections are refused) and reset open connections."""
        await self._running_gate().close()

    async def start_ssh(self) -> None:
        """Listen again on the same port."""
        await self._running_gate().open(self.port)

    async def restart_ssh(self) -> None:
        await self.stop_ssh()
        await self.start_ssh()

    async def freeze_ssh(self) -> None:
        """Accept TCP but pass no byte: handshakes never finish, sessions stop answering."""
        self._running_gate().freeze()

    async def thaw_ssh(self) -> None:
        self._running_gate().thaw()

    async def cut_after(self, n_bytes: int | None) -> None:
        """Reset every connection after ``n_bytes`` more bytes of upload; None disarms."""
        self._running_gate().cut_after(n_bytes)

    def _running_gate(self) -> TcpGate:
        if self._gate is None:
            raise SandboxError("the sandbox node is not started")
        return self._gate


async def _ask(path: Path, request: Request) -> Reply:
    """The asyncio form of ``protocol.exchange(connect(path), request)``."""
    with short_socket_path(path) as name:
        reader, writer = await asyncio.open_unix_connection(name)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    if not answer.endswith(b"\n"):
        raise DaemonGone("the daemon closed the connection without an answer")
    return Reply.decode(answer)
