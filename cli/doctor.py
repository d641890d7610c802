"""`mqi doctor`: what stands between this installation and a working daemon, in one run.

One line per check: ``ok``, ``warn``, ``FAIL`` (what is wrong and what to run to fix it) or
``skip`` (it needs a check that failed). In order: the configuration (loading it, and the
local files and folders it names), that each local folder the daemon writes in takes a new
file, then for each GPU node, all nodes at once: SSH (reachability, the host key, the key),
pueue's version, ``pueue status --json`` (the daemon's own poll), the configured groups
(present, one task at a time), the remote base folder (a probe file written and removed
over SFTP, as uploads write) and the clock offset between the two machines.

The node is reached exactly as the daemon reaches it (``HostConnection``, ``PueueHost``).
Lines carry paths, host names and pueue's words; never a key or anything of a case.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import secrets
import shlex
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import asyncssh
from rich.text import Text

from cli import render
from cli.bootstrap import load_context
from mqi_es.adapters.pueue.commands import (
    DAEMON_DOWN_REASON,
    build_version,
)
from mqi_es.adapters.pueue.host import PueueHost, ssh_target
from mqi_es.adapters.pueue.parse import (
    SUPPORTED_MAJORS,
    parse_version,
)
from mqi_es.adapters.ssh.connection import ConfigProblem, Connected, HostConnection, Reconnecting
from mqi_es.config import Config, HostConfig, LoadedConfig, check_config_environment
from mqi_es.config.rules import local_outputs
from mqi_es.core.errors import ConfigError
from mqi_es.core.observations import Observation, Seen
from mqi_es.core.outcome import Ok, Outcome, RemoteFailure, Unknown
from mqi_es.core.shell import split_home

CLOCK_WARN_SECONDS = 3.0  # larger offsets make the history mix two disagreeing clocks
_NOT_FOUND = 127  # the shell's exit status for an unknown command


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    """The result of one check: ``message`` says what was found, ``hint`` how to fix it."""

    check: str
    verdict: Verdict
    message: str
    hint: str = ""


def run_doctor(config_option: str | None) -> int:
    """Run every check, printing one line each as it ends; 1 if any failed, else 0."""
    if not logging.getLogger().handlers:
        # Failures reach the operator as findings; the library's log lines (printed by
        # logging's last-resort handler) would only repeat them.
        logging.getLogger().addHandler(logging.NullHandler())
    findings: list[Finding] = []

    def report(found: Iterable[Finding]) -> None:
        for finding in found:
            _print(finding)
            findings.append(finding)

    try:
        loaded = load_context(config_option).loaded
    except ConfigError as error:
        report([Finding("config", Verdict.FAIL, str(error))])
        return _summary(findings)
    report(examine_config(loaded))
    report(examine_local_folders(loaded.config))
    if loaded.config.hosts:
        render.console.print(f"checking {len(loaded.config.hosts)} node(s)...", style="dim")
    for found in asyncio.run(_examine_hosts(loaded.config)):
        report(found)
    return _summary(findings)


def examine_config(loaded: LoadedConfig) -> list[Finding]:
    """The configuration as loaded, its warnings, and the problems of the files it names."""
    config = loaded.config
    origin = str(loaded.source) if loaded.source else "built-in defaults"
    findings = [Finding("config", Verdict.WARN, warning) for warning in loaded.warnings]
    findings += [
        Finding("config", Verdict.FAIL, problem) for problem in check_config_environment(config)
    ]
    if not any(f.verdict is Verdict.FAIL for f in findings):
        findings.insert(
            0,
            Finding(
                "config",
                Verdict.OK,
                f"{origin}: {len(config.hosts)} node(s), watching {config.scanner.watch_path}",
            ),
        )
    return findings


def examine_local_folders(config: Config) -> list[Finding]:
    """Each local folder the daemon writes in takes a new file (created, then removed); a
    folder not created yet is probed in the nearest existing folder above it."""
    keys_by_folder: dict[Path, list[str]] = {}
    for key, _, folder in local_outputs(config):
        keys_by_folder.setdefault(folder, []).append(".".join(map(str, key)))
    return [_probe_local(folder, keys) for folder, keys in keys_by_folder.items()]


def _probe_local(folder: Path, keys: list[str]) -> Finding:
    named = f"{folder} ({', '.join(keys)})"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".mqi-doctor-", dir=existing)
        os.close(descriptor)
        Path(probe).unlink()
    except OSError as exc:
        where = "" if existing == folder else f" (it would be created in {existing})"
        return Finding(
            "local folder",
            Verdict.FAIL,
            f"cannot write in {named}{where}: {exc.strerror}",
            f"give it to the user who runs the daemon (chown), or change {', '.join(keys)}",
        )
    state = "is writable" if existing == folder else "can be created (the daemon creates it)"
    return Finding("local folder", Verdict.OK, f"{named} {state}")


async def _examine_hosts(config: Config) -> list[list[Finding]]:
    return list(
        await asyncio.gather(
            *(examine_host(host, results_globs=config.results.globs) for host in config.hosts)
        )
    )


async def examine_host(host: HostConfig, *, results_globs: tuple[str, ...]) -> list[Finding]:
    """Every check of one node, over one SSH connection, as the daemon makes it."""
    connection = HostConnection(ssh_target(host))
    node = PueueHost(host, connection, results_globs=results_globs)
    try:
        reached = await _ssh(host, connection)
        if reached.verdict is Verdict.FAIL:
            later = ("pueue version", "pueue status", "groups", "remote folder", "clock")
            return [reached, *_skipped(host, later, "needs SSH")]
        version = await _pueue_version(host, connection)
        observation = await node.observe()
        return [
            reached,
            version,
            _pueue_status(host, observation),
            _groups(host, observation),
            await _remote_folder(host, connection),
            _clock(host, observation),
        ]
    finally:
        await node.close()


async def _ssh(host: HostConfig, connection: HostConnection) -> Finding:
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
                f"{_first_line(stderr)}",
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


async def _pueue_version(host: HostConfig, connection: HostConnection) -> Finding:
    check = f"{host.name}: pueue version"
    outcome = await connection.run(build_version(pueue=host.pueue))
    match outcome:
        case Ok(stdout=stdout):
            found = parse_version(stdout)
            if found is None:
                return Finding(
                    check,
                    Verdict.FAIL,
                    f"`{host.pueue} --version` printed {_first_line(stdout)!r}, not a pueue "
                    "version",
                    "check the pueue setting of this host: it must name pueue's client",
                )
            return _judge_pueue_version(check, found)
        case RemoteFailure(exit_status=status) if status == _NOT_FOUND:
            return Finding(
                check,
                Verdict.FAIL,
                f"`{host.pueue}` not found on the node",
                "install pueue 4 there (docs/deployment.md), or set this host's pueue: to its "
                "full path (non-interactive SSH sessions often lack ~/.cargo/bin on PATH)",
            )
        case _:
            return Finding(check, Verdict.FAIL, f"`{host.pueue} --version` failed: {_why(outcome)}")


def _judge_pueue_version(check: str, version: tuple[int, ...]) -> Finding:
    """pueue 3.x and 4.x are read; older ones lack what tells tasks apart, newer ones may
    print something else."""
    shown = ".".join(map(str, version))
    major = version[0]
    if major < min(SUPPORTED_MAJORS):
        return Finding(
            check,
            Verdict.FAIL,
            f"pueue {shown} is too old: tasks carry no creation time before 3.0, and task "
            "ids are reused, so a task could be mistaken for another",
            "install pueue 4 on the node (docs/deployment.md)",
        )
    if major > max(SUPPORTED_MAJORS):
        return Finding(
            check,
            Verdict.WARN,
            f"pueue {shown} is newer than the versions this release reads (3.x, 4.x)",
            "if `pueue status` below fails, install pueue 4 on the node",
        )
    return Finding(check, Verdict.OK, f"pueue {shown}")


def _pueue_status(host: HostConfig, observation: Observation) -> Finding:
    check = f"{host.name}: pueue status"
    if isinstance(observation, Seen):
        snapshot = observation.snapshot
        return Finding(
            check,
            Verdict.OK,
            f"`pueue status --json` read: {len(snapshot.tasks)} task(s) in "
            f"{len(snapshot.groups)} group(s)",
        )
    hint = ""
    if observation.reason == DAEMON_DOWN_REASON:
        hint = (
            "start it on the node as the SSH user: `systemctl --user start pueued` "
            "(docs/deployment.md), or `pueued -d`"
        )
    return Finding(check, Verdict.FAIL, observation.reason, hint)


def _groups(host: HostConfig, observation: Observation) -> Finding:
    check = f"{host.name}: groups"
    if not isinstance(observation, Seen):
        return Finding(check, Verdict.SKIP, "needs `pueue status`")
    groups = observation.snapshot.groups
    missing = [name for name in host.groups if name not in groups]
    wide = [name for name in host.groups if name in groups and groups[name].parallel_tasks != 1]
    problems, fixes = [], []
    if missing:
        problems.append(f"configured group(s) missing on the node: {', '.join(missing)}")
        fixes += [f"pueue group add {shlex.quote(name)}" for name in missing]
    if wide:
        runs = ", ".join(f"{name} runs {groups[name].parallel_tasks}" for name in wide)
        problems.append(f"a group stands for one GPU and must run one task at a time: {runs}")
    fixes += [f"pueue parallel 1 -g {shlex.quote(name)}" for name in [*missing, *wide]]
    if problems:
        return Finding(check, Verdict.FAIL, "; ".join(problems), "on the node: " + "; ".join(fixes))
    paused = [name for name in host.groups if groups[name].status == "paused"]
    note = f" ({', '.join(paused)} paused: resumed when our task waits there)" if paused else ""
    return Finding(check, Verdict.OK, f"{', '.join(host.groups)} present, one task at a time{note}")


async def _remote_folder(host: HostConfig, connection: HostConnection) -> Finding:
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


def _clock(host: HostConfig, observation: Observation) -> Finding:
    """The node's clock as the daemon's own poll measures it (in the same round trip)."""
    check = f"{host.name}: clock"
    if not isinstance(observation, Seen):
        return Finding(check, Verdict.SKIP, "needs `pueue status`")
    offset = observation.skew
    if offset is None:
        return Finding(check, Verdict.WARN, "the node's `date` printed no time we can read")
    measured = f"{abs(offset):.3f} s {'ahead of' if offset > 0 else 'behind'} this machine"
    precision = f"(± {observation.rtt / 2 * 1000:.0f} ms)"
    if abs(offset) > CLOCK_WARN_SECONDS:
        return Finding(
            check,
            Verdict.WARN,
            f"the node's clock is {measured} {precision}: the history mixes times of both",
            "keep both clocks synchronised (NTP: `timedatectl set-ntp true` on each)",
        )
    return Finding(check, Verdict.OK, f"the node's clock is {measured} {precision}")


def _skipped(host: HostConfig, checks: Iterable[str], why: str) -> list[Finding]:
    return [Finding(f"{host.name}: {check}", Verdict.SKIP, why) for check in checks]


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


def _why(outcome: Outcome) -> str:
    match outcome:
        case RemoteFailure(exit_status=status, stderr=stderr):
            line = _first_line(stderr)
            return f"{line} (exit {status})" if line else f"exit {status}"
        case Unknown(reason=reason):
            return reason
        case _:
            return "no error"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


_STYLE = {
    Verdict.OK: "green",
    Verdict.WARN: "yellow",
    Verdict.FAIL: "bold red",
    Verdict.SKIP: "dim",
}


def _print(finding: Finding) -> None:
    hint = f" -- fix: {finding.hint}" if finding.hint else ""
    line = Text.assemble(
        (f"{finding.verdict.value:<4}", _STYLE[finding.verdict]),
        f"  {finding.check:<26} {finding.message}{hint}",
    )
    render.console.print(line, soft_wrap=True)


def _summary(findings: list[Finding]) -> int:
    """Print the counts; the exit code: 1 if any check failed."""
    failed = sum(f.verdict is Verdict.FAIL for f in findings)
    warned = sum(f.verdict is Verdict.WARN for f in findings)
    render.console.print(
        f"{len(findings)} checks: {failed} failed, {warned} warning(s)",
        style="bold red" if failed else "green",
    )
    return 1 if failed else 0
