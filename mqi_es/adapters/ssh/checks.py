"""`mqi doctor`'s checks of what any host reached over SSH needs: the connection itself (the
host key, our key, the login shell) and a remote base folder our SFTP session can write in."""

from __future__ import annotations

import posixpath
import secrets
import shlex
import time

import asyncssh

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.target import ConfigProblem, Connected, Reconnecting
from mqi_es.config import HostConfig
from mqi_es.core.checks import Finding, Verdict
from mqi_es.core.outcome import Ok, Outcome, RemoteFailure, Unknown
from mqi_es.core.shell import split_home


async def ssh_finding(host: HostConfig, connection: HostConnection) -> Finding:
    check = f"{host.name}: ssh"
    started = time.monotonic()
    outcome = await connection.run("true")
    elapsed = time.monotonic() - started
    state = connection.state
    match outcome:
        case Ok():
            cipher = state.cipher if isinstance(state, Connected) else "connected"
            return Finding(
                check,
                Verdict.OK,
                f"{_address(host)} answers, host key verified ({cipher}, {elapsed * 1000:.0f} ms)",
            )
        case RemoteFailure(exit_status=status, stderr=stderr):
            return Finding(
                check,
                Verdict.FAIL,
                f"logged in, but the login shell could not run `true` (exit {status}): "
                f"{first_line(stderr)}",
                "fix the shell start-up files of that user on the node (~/.bashrc, ~/.profile)",
            )
        case Unknown(reason=reason):
            if isinstance(state, ConfigProblem):
                return Finding(check, Verdict.FAIL, state.message)  # says what to do
            error = state.last_error if isinstance(state, Reconnecting) else reason
            return Finding(check, Verdict.FAIL, reason, _unreachable_hint(host, error))


def _unreachable_hint(host: HostConfig, error: str) -> str:
    try_it = f"try `{_ssh_command(host)}` as this user"
    port = host.port or "22 (or the Port of ~/.ssh/config)"
    if error == "connection refused":
        return f"nothing accepts SSH on {host.host} port {port}: is sshd running there? {try_it}"
    if error == "timed out":
        return f"no answer from {host.host}: check the address, firewalls and VPN; {try_it}"
    if error.startswith("cannot resolve"):
        return f"check the host name {host.host!r} (or its Host alias in ~/.ssh/config)"
    return try_it


async def remote_folder_finding(host: HostConfig, connection: HostConnection) -> Finding:
    """A probe file written and removed in the remote base folder, as uploads write."""
    check = f"{host.name}: remote folder"
    home = await connection.home()  # opens the SFTP session
    if isinstance(home, Unknown):
        return _no_sftp(check, home)
    sftp = await connection.sftp()
    if isinstance(sftp, Unknown):
        return _no_sftp(check, sftp)
    in_home, rest = split_home(host.remote_base_dir)
    base = posixpath.normpath(posixpath.join(home, rest) if in_home else rest)
    probe = posixpath.join(base, f".mqi-doctor-{secrets.token_hex(4)}")
    try:
        existed = await sftp.isdir(base)
        await sftp.makedirs(base, exist_ok=True)
        async with sftp.open(probe, "wb") as handle:
            await handle.write(b"written by mqi doctor; safe to delete\n")
        await sftp.remove(probe)
    except (OSError, asyncssh.Error) as exc:
        reason = exc.reason if isinstance(exc, asyncssh.Error) else exc.strerror or str(exc)
        return Finding(
            check,
            Verdict.FAIL,
            f"cannot write in {host.remote_base_dir} ({base}) on the node: {reason}",
            f"on the node: `mkdir -p {shlex.quote(base)}` owned by {host.user or 'the SSH user'}"
            ", or set this host's remote_base_dir to a folder it owns",
        )
    created = "" if existed else " (created it, as the first upload would have)"
    return Finding(check, Verdict.OK, f"{host.remote_base_dir} ({base}) is writable{created}")


def _no_sftp(check: str, unavailable: Unknown) -> Finding:
    return Finding(
        check,
        Verdict.FAIL,
        unavailable.reason,
        "case folders travel over SFTP: enable the sftp Subsystem in the node's sshd_config",
    )


def _address(host: HostConfig) -> str:
    user = f"{host.user}@" if host.user else ""
    port = f":{host.port}" if host.port else ""
    return f"{user}{host.host}{port}"


def _ssh_command(host: HostConfig) -> str:
    """The ``ssh`` command line that tries what the daemon tries."""
    words = ["ssh"]
    if host.port:
        words += ["-p", str(host.port)]
    if host.key_file:
        words += ["-i", str(host.key_file)]
    words += ["-o", f"UserKnownHostsFile={host.known_hosts}"]
    words += [f"{host.user}@{host.host}" if host.user else host.host, "true"]
    return shlex.join(words)


def why(outcome: Outcome) -> str:
    """What went wrong, on one line."""
    match outcome:
        case RemoteFailure(exit_status=status, stderr=stderr):
            line = first_line(stderr)
            return f"{line} (exit {status})" if line else f"exit {status}"
        case Unknown(reason=reason):
            return reason
        case _:
            return "no error"


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]
