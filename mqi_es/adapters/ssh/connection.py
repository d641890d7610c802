"""One persistent SSH connection per GPU node, and what its answers mean.

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
                    until a file involved (known_hosts, key, ssh config) changes or
                    `reset()` is called, because retrying cannot fix it.

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
import shlex
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncssh

from mqi_es.adapters.local.clock import utcnow
from mqi_es.config import HostConfig
from mqi_es.core import backoff
from mqi_es.core.outcome import Ok, Outcome, RemoteFailure, Unknown

__all__ = [
    "PREFERRED_CIPHER",
    "ConfigProblem",
    "Connected",
    "ConnectionState",
    "HostConnection",
    "Idle",
    "Reconnecting",
    "SshTarget",
    "backoff_delay",
    "ssh_target",
    "with_remote_timeout",
]

log = logging.getLogger(__name__)

# About twice chacha20-poly1305's throughput with AES-NI; asyncssh's defaults follow it as
# the fallback (this overrides a Ciphers line of the ssh config).
PREFERRED_CIPHER = "aes128-gcm@openssh.com"
_BACKOFF_BASE = 1.0  # seconds before the first retry, doubled per failure up to the cap
_KILL_AFTER = 2.0  # remote `timeout -k`: SIGKILL this long after SIGTERM
_LOCAL_MARGIN = 1.0  # local deadline = limit + _KILL_AFTER + this
# OpenSSH's MaxSessions allows 10 channels per connection; one more is the SFTP session.
_MAX_COMMAND_CHANNELS = 8
_CHANNEL_RETRY_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.5)  # seconds between channel open attempts
# coreutils timeout exits 124 after TERM, 137 when KILL was needed (-k).
_TIMEOUT_EXITS = frozenset({124, 128 + signal.SIGKILL})


@dataclass(frozen=True, slots=True)
class SshTarget:
    """How to reach one node. Unset fields come from the OpenSSH client config.

    :param name: our name for the host (logs, states, messages)
    :param host: address or an alias of ``~/.ssh/config`` (HostName, Port, User and
        IdentityFile are applied as ``ssh`` would)
    :param key_file: the only key offered when set; else the config's IdentityFile,
        the default keys and the SSH agent
    :param known_hosts: host keys trusted for this node; always verified
    :param trust_on_first_use: record an unknown host key (WARNING with its fingerprint);
        a key that differs from a recorded one is still refused
    :param ssh_config: client config files; None means the user's ``~/.ssh/config``
    """

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    key_file: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    trust_on_first_use: bool = False
    connect_timeout: float = 10.0
    login_timeout: float = 10.0
    keepalive_interval: float = 5.0
    keepalive_count_max: int = 3
    command_timeout: float = 30.0
    backoff_cap: float = 60.0
    ssh_config: tuple[Path, ...] | None = None


@dataclass(frozen=True, slots=True)
class Idle:
    """Not connected yet, or closed; the next command connects."""


@dataclass(frozen=True, slots=True)
class Connected:
    since: datetime
    cipher: str


@dataclass(frozen=True, slots=True)
class Reconnecting:
    last_error: str
    failures: int


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    message: str


ConnectionState = Idle | Connected | Reconnecting | ConfigProblem


def ssh_target(host: HostConfig) -> SshTarget:
    """How to reach ``host``; settings it does not name come from the user's ssh config."""
    return SshTarget(
        name=host.name,
        host=host.host,
        port=host.port,
        user=host.user,
        key_file=host.key_file,
        known_hosts=host.known_hosts,
        trust_on_first_use=host.trust_on_first_use,
        connect_timeout=host.connect_timeout_seconds,
        login_timeout=host.connect_timeout_seconds,
        keepalive_interval=host.keepalive_interval_seconds,
        command_timeout=host.command_timeout_seconds,
        backoff_cap=host.reconnect_backoff_cap_seconds,
    )


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


def with_remote_timeout(command: str, seconds: float) -> str:
    """`command` run by ``sh -c`` under coreutils ``timeout`` on the node.

    ``timeout`` leads its own process group and signals all of it, so the command's
    children die too; ``-k`` follows with SIGKILL for commands that ignore SIGTERM.
    """
    return f"timeout -k {_KILL_AFTER:g} {seconds:.3f} sh -c {shlex.quote(command)}"


class _Misconfigured(Exception):
    """A setting that no retry can fix (internal: becomes ConfigProblem)."""


class _Client(asyncssh.SSHClient):
    """Routes host key checks and connection loss back to the owning HostConnection."""

    def __init__(self, owner: HostConnection) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHClientConnection | None = None
        self.offered: tuple[str, str, int | None, asyncssh.SSHKey] | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn

    def validate_host_public_key(
        self, host: str, addr: str, port: int | None, key: asyncssh.SSHKey
    ) -> bool:
        # asyncssh asks only about a key that known_hosts does not list for this host.
        self.offered = (host, addr, port, key)
        return self._owner._trust_on_first_use(host, addr, port, key)

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
        self._known_hosts = target.known_hosts.expanduser()
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
            log.info("%s: command ended %s", self.target.name, _kind(outcome))
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
                    return Unknown(f"{self.target.name}: no SFTP session: {_describe(exc)}")
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

    def reset(self) -> None:
        """Forget a configuration problem or a backoff delay: the next command connects."""
        if isinstance(self._state, ConfigProblem | Reconnecting):
            self._state = Idle()
            self._failures = 0

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
        deadline = limit + _KILL_AFTER + _LOCAL_MARGIN + sum(_CHANNEL_RETRY_PAUSES)
        try:
            async with asyncio.timeout(deadline):
                done, started = await self._run_channel(conn, remote, stdin)
        except TimeoutError:
            # The node's own timeout should have answered long ago: the link is stuck.
            conn.abort()
            return Unknown(f"{self.target.name}: no answer within {limit:g} s")
        except (OSError, asyncssh.Error) as exc:
            return Unknown(f"{self.target.name}: {_describe(exc)}")
        return self._outcome(done, asyncio.get_running_loop().time() - started, limit)

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
        except _Misconfigured as exc:
            return self._config_problem(str(exc))
        except asyncssh.HostKeyNotVerifiable:
            return self._config_problem(self._host_key_message(client))
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
            return self._unreachable(_describe(exc))
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
            "known_hosts": str(self._known_hosts),
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
        name = self.target.name
        if self._key_file is not None and not os.access(self._key_file, os.R_OK):
            raise _Misconfigured(f"{name}: key_file {self._key_file} is missing or unreadable")
        if self._known_hosts.is_file():
            if not os.access(self._known_hosts, os.R_OK):
                raise _Misconfigured(f"{name}: known_hosts file {self._known_hosts} is unreadable")
            return
        if not self.target.trust_on_first_use:
            raise _Misconfigured(
                f"{name}: known_hosts file {self._known_hosts} does not exist: create it with "
                f"ssh-keyscan (then check the fingerprint), or set trust_on_first_use"
            )
        self._known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._known_hosts.touch(mode=0o600)

    def _trust_on_first_use(
        self, host: str, addr: str, port: int | None, key: asyncssh.SSHKey
    ) -> bool:
        """Record `key` if the node has no entry yet and TOFU is on; never replace one."""
        if not self.target.trust_on_first_use or self._recorded_keys(host, addr, port):
            return False
        key_type, key_data = key.export_public_key("openssh").decode().split()[:2]
        try:
            fd = os.open(self._known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as known_hosts:
                known_hosts.write(f"{_known_hosts_pattern(host, port)} {key_type} {key_data}\n")
                known_hosts.flush()
                os.fsync(known_hosts.fileno())
        except OSError as exc:
            log.error(
                "%s: cannot record the host key in %s: %s",
                self.target.name,
                self._known_hosts,
                exc.strerror,
            )
            return False
        log.warning(
            "%s: trusting the host key of %s on first use: %s %s, recorded in %s",
            self.target.name,
            _known_hosts_pattern(host, port),
            key_type,
            key.get_fingerprint(),
            self._known_hosts,
        )
        return True

    def _recorded_keys(self, host: str, addr: str, port: int | None) -> bool:
        try:
            trusted, ca_keys, *_ = asyncssh.match_known_hosts(
                str(self._known_hosts), host, addr, port
            )
        except (OSError, ValueError):
            return False
        return bool(trusted or ca_keys)

    def _host_key_message(self, client: _Client) -> str:
        name, path = self.target.name, self._known_hosts
        if client.offered is None:
            return f"{name}: the host key could not be verified against {path}"
        host, addr, port, key = client.offered
        pattern, fingerprint = _known_hosts_pattern(host, port), key.get_fingerprint()
        if self._recorded_keys(host, addr, port):
            return (
                f"{name}: the host key of {pattern} ({fingerprint}) does NOT match the one in "
                f"{path}: the node was reinstalled, or someone is in between. Check the "
                f"fingerprint on the node, then replace the entry "
                f"(ssh-keygen -R '{pattern}' -f {path})"
            )
        scan = f"ssh-keyscan {f'-p {port} ' if port else ''}{host} >> {path}"
        return (
            f"{name}: the host key of {pattern} ({fingerprint}) is not in known_hosts {path}: "
            f"add it with `{scan}` after checking the fingerprint, or set trust_on_first_use"
        )

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
        reason = f"connection lost: {_describe(exc) if exc else 'closed by the node'}"
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
        paths = [self._known_hosts, self._key_file, *(self.target.ssh_config or ())]
        if self.target.ssh_config is None:
            paths.append(Path("~/.ssh/config").expanduser())
        return tuple(_file_stamp(path) for path in paths if path is not None)

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def _outcome(self, done: asyncssh.SSHCompletedProcess, elapsed: float, limit: float) -> Outcome:
        stdout, stderr = _text(done.stdout), _text(done.stderr)
        timed_out = elapsed >= limit
        if done.exit_signal is not None:
            if timed_out:
                return Unknown(f"{self.target.name}: remote command timed out after {limit:g} s")
            return Unknown(
                f"{self.target.name}: remote command killed by signal {done.exit_signal[0]}"
            )
        if done.exit_status is None:
            return Unknown(f"{self.target.name}: connection lost during the command")
        if done.exit_status in _TIMEOUT_EXITS and timed_out:
            return Unknown(f"{self.target.name}: remote command timed out after {limit:g} s")
        if done.exit_status == 0:
            return Ok(stdout, stderr)
        return RemoteFailure(done.exit_status, stderr, stdout)


def _text(data: bytes | str | None) -> str:
    """Remote output as text; undecodable bytes become U+FFFD instead of raising."""
    if data is None:
        return ""
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def _kind(outcome: Outcome) -> str:
    """Outcome kind for INFO logs: no stderr, which may name cases."""
    if isinstance(outcome, RemoteFailure):
        return f"RemoteFailure(exit {outcome.exit_status})"
    return type(outcome).__name__


def _describe(exc: BaseException) -> str:
    """A short, data-free account of a connection-level exception."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _known_hosts_pattern(host: str, port: int | None) -> str:
    return host if port in (None, 22) else f"[{host}]:{port}"


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
