"""The node's SSH server: asyncssh's server running real shell commands and real SFTP.

* Authentication: one user, one generated client key; passwords and keyboard-interactive
  are off. The host key is generated once per node root and kept, so known_hosts stays valid
  across restarts.
* Commands run like a login shell runs them: ``/bin/sh -c "<command>"`` in the sandbox home,
  with ``HOME`` = that home and the sandbox ``bin`` first on ``PATH`` (so ``~`` is the sandbox
  home and ``pueue`` is the stand-in). stdin, stdout, stderr and the exit status (or signal)
  are forwarded. When the client goes away, the command's whole process group is killed.
* SFTP: relative paths and ``realpath('.')`` resolve against the sandbox home, as OpenSSH's
  sftp-server starts in the user's home; absolute paths are used as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import signal
from dataclasses import dataclass
from pathlib import Path

import asyncssh

# aes128-gcm first: about twice the speed of chacha20-poly1305 here (field notes, section 4).
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
CHUNK = 65536
SESSION_END_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class NodeKeys:
    """The node's host key and the client key it authorizes, stored under ``folder``."""

    folder: Path

    @property
    def host_key_file(self) -> Path:
        return self.folder / "ssh_host_ed25519_key"

    @property
    def client_key_file(self) -> Path:
        return self.folder / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    def ensure(self) -> tuple[asyncssh.SSHKey, asyncssh.SSHKey]:
        """Load the host and client keys, generating each one the first time."""
        return _load_or_generate(self.host_key_file), _load_or_generate(self.client_key_file)

    def write_known_hosts(self, host: str, port: int, host_key: asyncssh.SSHKey) -> None:
        public = host_key.export_public_key().decode().strip()
        _write_private(self.known_hosts, f"[{host}]:{port} {public}\n".encode())


def _load_or_generate(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="mqi-sandbox")
    _write_private(path, key.export_private_key())
    _write_private(path.with_name(path.name + ".pub"), key.export_public_key())
    return key


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    temporary.replace(path)


class _KeyOnlyServer(asyncssh.SSHServer):
    def __init__(self, user: str, client_key: asyncssh.SSHKey) -> None:
        self._user = user
        self._client_key = client_key

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._user and key.public_data == self._client_key.public_data


class _HomeSFTPServer(asyncssh.SFTPServer):
    def __init__(self, channel: asyncssh.SSHServerChannel[bytes], home: bytes) -> None:
        super().__init__(channel)
        self._home = home

    def map_path(self, path: bytes) -> bytes:
        return posixpath.join(self._home, path)


class CommandRunner:
    """The ``process_factory``: runs each exec request as a real shell command."""

    def __init__(self, home: Path, bin_dir: Path, user: str) -> None:
        self._home = home
        self._bin = bin_dir
        self._user = user
        self._running: set[asyncio.subprocess.Process] = set()
        self._sessions: set[asyncio.Task[object]] = set()

    def _environment(self, peer: tuple[str, int], local: tuple[str, int]) -> dict[str, str]:
        """What sshd gives a session, with the sandbox home and bin folder."""
        return {
            "HOME": str(self._home),
            "USER": self._user,
            "LOGNAME": self._user,
            "SHELL": "/bin/sh",
            "PATH": f"{self._bin}:/usr/local/bin:/usr/bin:/bin",
            "SSH_CLIENT": f"{peer[0]} {peer[1]} {local[1]}",
            "SSH_CONNECTION": f"{peer[0]} {peer[1]} {local[0]} {local[1]}",
        }

    async def __call__(self, session: asyncssh.SSHServerProcess[bytes]) -> None:
        current = asyncio.current_task()
        assert current is not None
        self._sessions.add(current)
        try:
            await self._serve(session)
        finally:
            self._sessions.discard(current)

    async def _serve(self, session: asyncssh.SSHServerProcess[bytes]) -> None:
        if session.subsystem is not None:
            session.stderr.write(f"subsystem {session.subsystem!r} is not served\n".encode())
            session.exit(1)
            return
        argv = ["/bin/sh"] if session.command is None else ["/bin/sh", "-c", session.command]
        environment = self._environment(
            session.get_extra_info("peername"), session.get_extra_info("sockname")
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._home,
                env=environment,
                start_new_session=True,
                umask=0o077,
            )
        except OSError as error:
            session.stderr.write(f"sh: {error.strerror}\n".encode())
            session.exit(127)
            return
        self._running.add(process)
        try:
            await self._relay(session, process)
        finally:
            self._running.discard(process)

    async def _relay(
        self, session: asyncssh.SSHServerProcess[bytes], process: asyncio.subprocess.Process
    ) -> None:
        assert process.stdin and process.stdout and process.stderr
        feeding = asyncio.create_task(_feed(session.stdin, process.stdin))
        outputs = [
            asyncio.create_task(_drain(process.stdout, session.stdout)),
            asyncio.create_task(_drain(process.stderr, session.stderr)),
        ]
        finished = asyncio.create_task(_finish(process, outputs))
        hung_up = asyncio.create_task(session.channel.wait_closed())
        helpers = [feeding, *outputs, finished, hung_up]
        try:
            await asyncio.wait({finished, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            if finished.done() and finished.exception() is None:
                _report_exit(session, finished.result())
            else:
                _kill_group(process)
                await process.wait()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def close(self) -> None:
        """Kill every command still running and wait for their sessions to end."""
        for process in self._running:
            _kill_group(process)
        if self._sessions:
            await asyncio.wait(self._sessions, timeout=SESSION_END_SECONDS)


async def _feed(source: asyncssh.SSHReader[bytes], sink: asyncio.StreamWriter) -> None:
    """Copy the client's stdin to the command; close the command's stdin on EOF."""
    try:
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, asyncssh.Error):
        pass
    finally:
        sink.close()


async def _drain(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    while data := await source.read(CHUNK):
        sink.write(data)
        await sink.drain()


async def _finish(process: asyncio.subprocess.Process, outputs: list[asyncio.Task[None]]) -> int:
    """Wait until the command has exited and all its output has been sent."""
    await asyncio.gather(*outputs)
    return await process.wait()


def _report_exit(session: asyncssh.SSHServerProcess[bytes], status: int) -> None:
    if status >= 0:
        session.exit(status)
    else:
        session.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def start_ssh_server(
    *,
    home: Path,
    runner: CommandRunner,
    user: str,
    host_key: asyncssh.SSHKey,
    client_key: asyncssh.SSHKey,
    host: str = "127.0.0.1",
    port: int = 0,
) -> asyncssh.SSHAcceptor:
    """Listen on ``host:port`` (0: any free port) and serve commands and SFTP."""
    home_bytes = os.fsencode(home)
    return await asyncssh.create_server(
        lambda: _KeyOnlyServer(user, client_key),
        host,
        port,
        server_host_keys=[host_key],
        process_factory=runner,
        sftp_factory=lambda channel: _HomeSFTPServer(channel, home_bytes),
        allow_scp=True,
        encoding=None,
        encryption_algs=list(ENCRYPTION_ALGS),
    )
