"""One persistent SSH connection per GPU node (its answers are read by ``answers``).

`HostConnection` keeps one asyncssh connection and one SFTP session per host, reused by
every command and transfer. Everything asked of the node comes back as an `Outcome`
(mqi_es.core.outcome); no asyncssh or OS exception leaves `run()`:

    exit 0                                        Ok(stdout, stderr)
    exit N != 0                                   RemoteFailure(N, stderr, stdout)
    cannot connect, timed out, connection lost,   Unknown(reason)
    killed by a signal, a configuration problem

Connection states (`HostConnection.state`, for status views):

    Idle            not connected yet (the first command connects) or closed
    Connected       since when, and the negotiated cipher
    Reconnecting    the last attempt failed or the link dropped; next attempt at T (capped
                    exponential backoff, full jitter). No background task: the first
                    command after T connects; earlier ones get Unknown at once.
    ConfigProblem   unknown or changed host key, key refused, key unusable: NOT retried
                    until a file involved (known_hosts, key, ssh config) changes,
                    because retrying cannot fix it.

Every command runs under the node's coreutils ``timeout`` so a hung command never lingers
there (an asyncssh ``run(timeout=...)`` only stops waiting), plus a slightly longer local
deadline. The remote login shell must be POSIX-like (sh, bash, zsh).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path

import asyncssh

from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.ssh.answers import KILL_AFTER, describe, kind, outcome_of, with_remote_timeout
from mqi_es.adapters.ssh.host_keys import KnownHosts, Misconfigured, Offered
from mqi_es.adapters.ssh.target import (
    ConfigProblem,
    Connected,
    ConnectionState,
    Idle,
    Reconnecting,
    SshTarget,
)
from mqi_es.core import backoff
from mqi_es.core.outcome import Ok, Outcome, Unknown

log = logging.getLogger(__name__)

# About twice chacha20-poly1305's throughput with AES-NI; asyncssh's defaults follow it as
# the fallback (this overrides a Ciphers line of the ssh config).
PREFERRED_CIPHER = "aes128-gcm@openssh.com"
_BACKOFF_BASE = 1.0  # seconds before the first retry, doubled per failure up to the cap
_LOCAL_MARGIN = 1.0  # local deadline = limit + KILL_AFTER + this
# OpenSSH's MaxSessions allows 10 channels per connection; one more is the SFTP session.
_MAX_COMMAND_CHANNELS = 8
_CHANNEL_RETRY_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.5)  # seconds between channel open attempts


def backoff_delay(
    failures: int,
    *,
    cap: float,
    base: float = _BACKOFF_BASE,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after `failures` consecutive failed attempts.

    Full jitter: uniform(0, min(cap, base * 2**(failures - 1))), so that daemons that lost
    a node together do not reconnect in lockstep.
    """
    return rand() * backoff.delay(failures, base=base, cap=cap)


class _Client(asyncssh.SSHClient):
    """Routes host key checks and connection loss back to the owning HostConnection."""

    def __init__(self, owner: HostConnection) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHClientConnection | None = None
        self.offered: Offered | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def validate_host_public_key(
        self, host: str, addr: str, port: int | None, key: asyncssh.SSHKey
    ) -> bool:
        # asyncssh asks only about a key that known_hosts does not list for this host.
        self.offered = (host, addr, port, key)
        return self._owner.known_hosts.trust_new(self.offered)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._connection_lost(self._conn, exc)


class HostConnection:
    """The one connection to a node: commands, an SFTP session, reconnects.

    Use as ``async with HostConnection(target) as node: await node.run("...")``, or call
    `close()`. `rand` and `clock` are seams for tests (backoff jitter, monotonic time).
    """

    def __init__(
        self,
        target: SshTarget,
        *,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.target = target
        self._rand = rand
        self._clock = clock
        self.known_hosts = KnownHosts(
            target.name, target.known_hosts, trust_on_first_use=target.trust_on_first_use
        )
        self._key_file = target.key_file.expanduser() if target.key_file else None
        self._state: ConnectionState = Idle()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._attempt: asyncio.Task[asyncssh.SSHClientConnection | Unknown] | None = None
        self._failures = 0
        self._next_attempt = 0.0
        self._problem_stamp: tuple[object, ...] = ()
        self._closing = False
        self._channels = asyncio.Semaphore(_MAX_COMMAND_CHANNELS)
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_lock = asyncio.Lock()
        self._sftp_watch: asyncio.Task[None] | None = None
        self._home: str | None = None
        _quiet_library_logging()

    @property
    def state(self) -> ConnectionState:
        return self._state

    async def __aenter__(self) -> HostConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def run(
        self, command: str, *, timeout: float | None = None, input: str | None = None
    ) -> Outcome:
        """Run `command` through the node's login shell; never raises for remote trouble.

        :param command: a shell command line; every value in it must already be quoted
        :param timeout: seconds the command may take on the node (default: the target's
            command_timeout); the node kills it then
        :param input: text fed to the command's stdin
        :returns: Ok, RemoteFailure or Unknown (see the module docstring)
        :raises ValueError: a timeout <= 0, or text that is not valid Unicode (a
            surrogate-escaped non-UTF-8 file name): callers must not build such commands
        """
        limit = self.target.command_timeout if timeout is None else timeout
        if limit <= 0:
            raise ValueError(f"timeout must be positive, not {limit}")
        for text in (command, input or ""):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("command or input is not valid UTF-8 text") from None
        conn = await self._connection()
        if isinstance(conn, Unknown):
            return conn
        log.debug("%s: run %s", self.target.name, command)
        async with self._channels:
            outcome = await self._execute(conn, command, limit, input)
        if not isinstance(outcome, Ok):
            log.info("%s: command ended %s", self.target.name, kind(outcome))
        return outcome

    async def sftp(self) -> asyncssh.SFTPClient | Unknown:
        """The shared SFTP session, opened (or reopened) on demand."""
        conn = await self._connection()
        if isinstance(conn, Unknown):
            return conn
        async with self._sftp_lock:
            if self._sftp is None:
                try:
                    async with asyncio.timeout(self.target.command_timeout):
                        client = await conn.start_sftp_client()
                        home = await client.realpath(".")
                except (OSError, asyncssh.Error) as exc:
                    return Unknown(f"{self.target.name}: no SFTP session: {describe(exc)}")
                self._sftp, self._home = client, str(home)
                self._sftp_watch = asyncio.create_task(self._forget_sftp_when_closed(client))
            return self._sftp

    async def home(self) -> str | Unknown:
        """The remote home folder as SFTP resolves it (SFTP does not expand ``~``)."""
        sftp = await self.sftp()
        if isinstance(sftp, Unknown):
            return sftp
        assert self._home is not None
        return self._home

    async def close(self) -> None:
        """Close the SFTP session and the connection."""
        self._closing = True
        try:
            if self._attempt is not None:
                self._attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._attempt
            if self._sftp_watch is not None:
                self._sftp_watch.cancel()
            if self._sftp is not None:
                self._sftp.exit()
            if self._conn is not None:
                self._conn.close()
                await self._conn.wait_closed()
        finally:
            self._conn = self._sftp = self._sftp_watch = None
            self._state = Idle()
            self._closing = False

    async def _execute(
        self, conn: asyncssh.SSHClientConnection, command: str, limit: float, input: str | None
    ) -> Outcome:
        remote = with_remote_timeout(command, limit)
        stdin = None if input is None else input.encode()
        deadline = limit + KILL_AFTER + _LOCAL_MARGIN + sum(_CHANNEL_RETRY_PAUSES)
        try:
            async with asyncio.timeout(deadline):
                done, started = await self._run_channel(conn, remote, stdin)
        except TimeoutError:
            # The node's own timeout should have answered long ago: the link is stuck.
            conn.abort()
            return Unknown(f"{self.target.name}: no answer within {limit:g} s")
        except (OSError, asyncssh.Error) as exc:
            return Unknown(f"{self.target.name}: {describe(exc)}")
        elapsed = asyncio.get_running_loop().time() - started
        return outcome_of(self.target.name, done, elapsed, limit)

    @staticmethod
    async def _run_channel(
        conn: asyncssh.SSHClientConnection, remote: str, stdin: bytes | None
    ) -> tuple[asyncssh.SSHCompletedProcess, float]:
        """conn.run() and when it started. A refused channel ran nothing: ask again.

        sshd frees a finished session's slot a moment after its channel closed, so a busy
        connection meets "no more sessions" now and then.
        """
        loop = asyncio.get_running_loop()
        for pause in _CHANNEL_RETRY_PAUSES:
            started = loop.time()
            try:
                return await conn.run(remote, input=stdin, encoding=None, check=False), started
            except asyncssh.ChannelOpenError:
                if conn.is_closed():
                    raise
                await asyncio.sleep(pause)
        started = loop.time()
        return await conn.run(remote, input=stdin, encoding=None, check=False), started

    # -- connecting -------------------------------------------------------------------

    async def _connection(self) -> asyncssh.SSHClientConnection | Unknown:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        if self._attempt is None:
            blocked = self._blocked()
            if blocked is not None:
                return blocked
            self._attempt = asyncio.create_task(self._connect())
        # Concurrent callers share one attempt; a cancelled caller does not cancel it.
        return await asyncio.shield(self._attempt)

    def _blocked(self) -> Unknown | None:
        """Why no attempt may be made now, or None."""
        state = self._state
        if isinstance(state, ConfigProblem):
            if self._config_stamp() == self._problem_stamp:
                return Unknown(state.message)
            log.info("%s: SSH configuration files changed, trying again", self.target.name)
        elif isinstance(state, Reconnecting):
            wait = self._next_attempt - self._now()
            if wait > 0:
                return Unknown(
                    f"{self.target.name} unreachable: {state.last_error} "
                    f"(next attempt in {wait:.0f} s)"
                )
        return None

    async def _connect(self) -> asyncssh.SSHClientConnection | Unknown:
        target = self.target
        client = _Client(self)
        try:
            options = self._connect_options()
            async with asyncio.timeout(target.connect_timeout + target.login_timeout + 1):
                conn = await asyncssh.connect(target.host, client_factory=lambda: client, **options)
        except Misconfigured as exc:
            return self._config_problem(str(exc))
        except asyncssh.HostKeyNotVerifiable:
            return self._config_problem(self.known_hosts.refusal(client.offered))
        except asyncssh.PermissionDenied:
            return self._config_problem(
                f"{target.name}: the node refused our key for user "
                f"{target.user or '(from ssh config)'}: add the public key of "
                f"{self._key_file or 'the SSH agent or default keys'} to the node's "
                "~/.ssh/authorized_keys"
            )
        except (asyncssh.KeyExchangeFailed, asyncssh.ProtocolNotSupported) as exc:
            return self._config_problem(
                f"{target.name}: no common SSH algorithms with the node: {exc.reason}"
            )
        except ValueError as exc:  # asyncssh's verdict on options, keys, config files
            return self._config_problem(f"{target.name}: unusable SSH settings: {exc}")
        except (OSError, asyncssh.Error) as exc:
            return self._unreachable(describe(exc))
        finally:
            self._attempt = None
        self._conn = conn
        self._failures = 0
        cipher = str(conn.get_extra_info("send_cipher"))
        self._state = Connected(since=utcnow(), cipher=cipher)
        log.info("%s: connected (%s)", target.name, cipher)
        return conn

    def _connect_options(self) -> dict[str, object]:
        target = self.target
        self._check_files()
        options: dict[str, object] = {
            "known_hosts": str(self.known_hosts.path),
            "connect_timeout": target.connect_timeout,
            "login_timeout": target.login_timeout,
            "keepalive_interval": target.keepalive_interval,
            "keepalive_count_max": target.keepalive_count_max,
            "encryption_algs": f"^{PREFERRED_CIPHER}",
            "config": () if target.ssh_config is None else [str(p) for p in target.ssh_config],
        }
        if target.port is not None:
            options["port"] = target.port
        if target.user is not None:
            options["username"] = target.user
        if self._key_file is not None:
            options["client_keys"] = [str(self._key_file)]
            options["agent_path"] = None
        return options

    def _check_files(self) -> None:
        """Refuse to connect on missing files, with what to do about them."""
        if self._key_file is not None and not os.access(self._key_file, os.R_OK):
            raise Misconfigured(
                f"{self.target.name}: key_file {self._key_file} is missing or unreadable"
            )
        self.known_hosts.ensure()

    def _config_problem(self, message: str) -> Unknown:
        self._state = ConfigProblem(message)
        self._problem_stamp = self._config_stamp()
        log.error("%s (not retried until this is fixed)", message)
        return Unknown(message)

    def _unreachable(self, reason: str) -> Unknown:
        self._failures += 1
        delay = backoff_delay(self._failures, cap=self.target.backoff_cap, rand=self._rand)
        self._next_attempt = self._now() + delay
        self._state = Reconnecting(last_error=reason, failures=self._failures)
        # WARNING when the node goes away; the retries of a long outage only at INFO.
        log.log(
            logging.WARNING if self._failures == 1 else logging.INFO,
            "%s unreachable: %s (attempt %d failed, next in %.1f s)",
            self.target.name,
            reason,
            self._failures,
            delay,
        )
        return Unknown(f"{self.target.name} unreachable: {reason}")

    def _connection_lost(self, conn: asyncssh.SSHClientConnection, exc: Exception | None) -> None:
        if conn is not self._conn or self._closing:
            return
        self._conn = self._sftp = None
        reason = f"connection lost: {describe(exc) if exc else 'closed by the node'}"
        # The first reconnect is immediate; backoff starts if it fails.
        self._failures = 0
        self._next_attempt = self._now()
        self._state = Reconnecting(reason, 0)
        log.warning("%s: %s", self.target.name, reason)

    async def _forget_sftp_when_closed(self, client: asyncssh.SFTPClient) -> None:
        await client.wait_closed()
        if self._sftp is client:
            self._sftp = None

    def _config_stamp(self) -> tuple[object, ...]:
        """What a fix of a configuration problem would change."""
        paths = [self.known_hosts.path, self._key_file, *(self.target.ssh_config or ())]
        if self.target.ssh_config is None:
            paths.append(Path("~/.ssh/config").expanduser())
        return tuple(_file_stamp(path) for path in paths if path is not None)

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()


def _file_stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (str(path), stat.st_mtime_ns, stat.st_size)


def _quiet_library_logging() -> None:
    """asyncssh logs every command line at INFO; command lines may name patient cases.

    Raise its threshold to WARNING unless someone chose a level for it explicitly.
    """
    library = logging.getLogger("asyncssh")
    if library.level == logging.NOTSET:
        library.setLevel(logging.WARNING)
