"""`mqi doctor`'s checks of a pueue node: pueue's version, its status (the daemon's own
poll), and the configured groups (present, one task at a time)."""

from __future__ import annotations

import shlex

from mqi_es.adapters.pueue.commands import DAEMON_DOWN_REASON, build_version
from mqi_es.adapters.pueue.model import PueueState
from mqi_es.adapters.pueue.parse import SUPPORTED_MAJORS, parse_version
from mqi_es.adapters.ssh.checks import first_line, why
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.config import HostConfig
from mqi_es.core.checks import Finding, Verdict
from mqi_es.core.outcome import Ok, RemoteFailure
from mqi_es.core.remote import Observation, Seen

_NOT_FOUND = 127  # the shell's exit status for an unknown command


async def version_finding(host: HostConfig, connection: HostConnection) -> Finding:
    check = f"{host.name}: pueue version"
    outcome = await connection.run(build_version(pueue=host.pueue))
    match outcome:
        case Ok(stdout=stdout):
            found = parse_version(stdout)
            if found is None:
                return Finding(
                    check,
                    Verdict.FAIL,
                    f"`{host.pueue} --version` printed {first_line(stdout)!r}, not a pueue version",
                    "check the pueue setting of this host: it must name pueue's client",
                )
            return _judge_version(check, found)
        case RemoteFailure(exit_status=status) if status == _NOT_FOUND:
            return Finding(
                check,
                Verdict.FAIL,
                f"`{host.pueue}` not found on the node",
                "install pueue 4 there (docs/deployment.md), or set this host's pueue: to its "
                "full path (non-interactive SSH sessions often lack ~/.cargo/bin on PATH)",
            )
        case _:
            return Finding(check, Verdict.FAIL, f"`{host.pueue} --version` failed: {why(outcome)}")


def _judge_version(check: str, version: tuple[int, ...]) -> Finding:
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


def status_finding(host: HostConfig, observation: Observation) -> Finding:
    check = f"{host.name}: pueue status"
    if isinstance(observation, Seen):
        snapshot = observation.snapshot
        return Finding(
            check,
            Verdict.OK,
            f"`pueue status --json` read: {len(snapshot.tasks)} task(s) in "
            f"{len(snapshot.slots)} group(s)",
        )
    hint = ""
    if observation.reason == DAEMON_DOWN_REASON:
        hint = (
            "start it on the node as the SSH user: `systemctl --user start pueued` "
            "(docs/deployment.md), or `pueued -d`"
        )
    return Finding(check, Verdict.FAIL, observation.reason, hint)


def groups_finding(host: HostConfig, state: PueueState | None) -> Finding:
    check = f"{host.name}: groups"
    if state is None:
        return Finding(check, Verdict.SKIP, "needs `pueue status`")
    groups = state.groups
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
