"""What a node's answer means, the same for every command run over SSH:

    exit 0                                        Ok(stdout, stderr)
    exit N != 0                                   RemoteFailure(N, stderr, stdout)
    timed out (the node's ``timeout`` or ours),   Unknown(reason)
    killed by a signal, connection lost

Every command runs under the node's coreutils ``timeout`` (``with_remote_timeout``), so a
hung command never lingers there.
"""

from __future__ import annotations

import shlex
import signal
import socket

import asyncssh

from mqi_es.core.outcome import Ok, Outcome, RemoteFailure, Unknown

KILL_AFTER = 2.0  # remote `timeout -k`: SIGKILL this long after SIGTERM
# coreutils timeout exits 124 after TERM, 137 when KILL was needed (-k).
_TIMEOUT_EXITS = frozenset({124, 128 + signal.SIGKILL})


def with_remote_timeout(command: str, seconds: float) -> str:
    """`command` run by ``sh -c`` under coreutils ``timeout`` on the node.

    ``timeout`` leads its own process group and signals all of it, so the command's
    children die too; ``-k`` follows with SIGKILL for commands that ignore SIGTERM.
    """
    return f"timeout -k {KILL_AFTER:g} {seconds:.3f} sh -c {shlex.quote(command)}"


def outcome_of(
    name: str, done: asyncssh.SSHCompletedProcess, elapsed: float, limit: float
) -> Outcome:
    """What a finished command's exit, signal and running time mean."""
    stdout, stderr = text(done.stdout), text(done.stderr)
    timed_out = elapsed >= limit
    if done.exit_signal is not None:
        if timed_out:
            return Unknown(f"{name}: remote command timed out after {limit:g} s")
        return Unknown(f"{name}: remote command killed by signal {done.exit_signal[0]}")
    if done.exit_status is None:
        return Unknown(f"{name}: connection lost during the command")
    if done.exit_status in _TIMEOUT_EXITS and timed_out:
        return Unknown(f"{name}: remote command timed out after {limit:g} s")
    if done.exit_status == 0:
        return Ok(stdout, stderr)
    return RemoteFailure(done.exit_status, stderr, stdout)


def text(data: bytes | str | None) -> str:
    """Remote output as text; undecodable bytes become U+FFFD instead of raising."""
    if data is None:
        return ""
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


def kind(outcome: Outcome) -> str:
    """Outcome kind for INFO logs: no stderr, which may name cases."""
    if isinstance(outcome, RemoteFailure):
        return f"RemoteFailure(exit {outcome.exit_status})"
    return type(outcome).__name__


def describe(exc: BaseException) -> str:
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
