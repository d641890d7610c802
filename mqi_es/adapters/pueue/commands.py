"""The command lines we send pueue over SSH, and what its failures mean. Pure.

Every ``build_*`` function returns the pueue command line sent over SSH. It is parsed by
shells twice::

    node:   sh -c '<pueue command line>'                              (level 1)
    pueue:  sh -c '<task command>'                                    (level 2)

The builders do not limit how long pueue may take: ``HostConnection.run`` runs every
command under the node's ``timeout`` (level 1 is its ``sh -c``), and tells a command it
stopped from one that answered. Every value that reaches either level is single-quoted
(``mqi_es.core.shell``). pueue runs under ``env -i`` with a few variables passed through,
so the SSH session's environment does not land in pueue's state file (``envs``) nor in
the task. The login shell must be a POSIX shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from mqi_es.adapters.ssh.node_clock import CLOCK_COMMAND
from mqi_es.core.errors import ConfigError
from mqi_es.core.outcome import Outcome, RemoteFailure, Unknown
from mqi_es.core.shell import checked_env_name, quote, remote_path

DAEMON_DOWN_REASON = "pueue daemon not running on the node"
# sh reports a command killed by signal N as exit status 128 + N; pueue itself exits 1 or 2.
_KILLED_BY_SIGNAL = 128

# Unix socket: '... while connecting to daemon. Did you start it?'; TCP: '... on H:P. Did
# you start it?'; no config file yet: "Couldn't find a configuration file. Did you start
# the daemon yet?" (pueue_lib/src/network/socket/unix.rs, pueue/src/client/client.rs).
_DAEMON_DOWN_MARKERS = ("Did you start it?", "Did you start the daemon yet?")


def is_daemon_down(stderr: str) -> bool:
    """Whether pueue's stderr says it could not reach its daemon (exit 1 in that case)."""
    return any(marker in stderr for marker in _DAEMON_DOWN_MARKERS)


def classify(outcome: Outcome) -> Outcome:
    """Turn failures that say nothing about the task into ``Unknown``.

    A daemon that is not running is a service outage, not a refusal. A pueue client
    killed by a signal (the OOM killer, an administrator) may or may not have taken
    effect (an ``add`` may have queued the task), so its outcome is unknown too. A
    command stopped by our remote ``timeout`` is already ``Unknown``: ``HostConnection``
    says so.
    """
    if isinstance(outcome, RemoteFailure):
        if is_daemon_down(outcome.stderr):
            return Unknown(DAEMON_DOWN_REASON)
        if outcome.exit_status > _KILLED_BY_SIGNAL:
            signal_number = outcome.exit_status - _KILLED_BY_SIGNAL
            return Unknown(
                f"pueue was killed by signal {signal_number} (exit status {outcome.exit_status})"
            )
    return outcome


DEFAULT_LOG_LINES = 50

# Passed through `env -i` when set: pueue finds its config, state and socket through these.
_PASSED_THROUGH = (
    "HOME",
    "PATH",
    "USER",
    "LOGNAME",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "PUEUE_CONFIG_PATH",
)


def gpu_index(group: str) -> str:
    """The trailing digits of a group name (``gpu2`` -> ``2``), or ``""`` if there are none."""
    match = re.search(r"[0-9]+\Z", group, re.ASCII)
    return match.group() if match else ""


def build_add(
    *,
    group: str,
    label: str,
    working_dir: str,
    task_command: str,
    pueue: str = "pueue",
    env: Mapping[str, str] | None = None,
    env_from_node: Sequence[str] = (),
) -> str:
    """``pueue add --print-task-id`` of ``task_command`` (run by pueue through ``sh -c``).

    pueue gives a task the environment of the ``pueue add`` client, which runs under
    ``env -i``: the task gets the passed-through variables, ``LANG=C.UTF-8``, the names in
    ``env_from_node`` that are set in the node's SSH environment, and ``env``.

    :raises ConfigError: a bad group, pueue path or variable name.
    :raises ValueError: an empty label or command, or a NUL character anywhere.
    """
    if not label or not task_command:
        raise ValueError("label and task_command must not be empty")
    return _pueue(
        [
            "add",
            "--print-task-id",
            "--group=" + quote(_checked_group(group)),
            "--label=" + quote(label),
            "--working-directory=" + remote_path(working_dir),
            "--",
            quote(task_command),
        ],
        pueue=pueue,
        env=env,
        inherit=env_from_node,
    )


def build_status(*, pueue: str = "pueue") -> str:
    """``pueue status --json`` for every group: filter with ``StatusSnapshot.tasks_in_slot``."""
    return _pueue(["status", "--json"], pueue=pueue)


def build_observe(*, pueue: str = "pueue") -> str:
    """One round trip for a poll: the node's clock, then ``pueue --version``, then
    ``pueue status --json`` (read with ``parse_status_reading``).

    The clock read in the same round trip measures the node's skew and lets remote
    durations be computed on the node's clock alone; the version tells a pueue too old to
    tell its tasks apart before anything is submitted to it.
    """
    return f"{CLOCK_COMMAND} && {build_version(pueue=pueue)} && {build_status(pueue=pueue)}"


def build_version(*, pueue: str = "pueue") -> str:
    """``pueue --version`` (prints e.g. ``pueue 4.0.4``)."""
    return _pueue(["--version"], pueue=pueue)


def build_kill(task_id: int, *, pueue: str = "pueue") -> str:
    """``pueue kill <id>``. pueue kills asynchronously: confirm through a later status."""
    return _pueue(["kill", str(_count(task_id, "task_id"))], pueue=pueue)


def build_remove(*task_ids: int, pueue: str = "pueue") -> str:
    """``pueue remove <id>...``: drop tasks that wait or ended (pueue refuses running ones)."""
    if not task_ids:
        raise ValueError("pueue remove needs at least one task id")
    return _pueue(["remove", *(str(_count(i, "task_id")) for i in task_ids)], pueue=pueue)


def build_start_group(group: str, *, pueue: str = "pueue") -> str:
    """``pueue start --group G``: resume a group (pueue pauses them when its daemon restarts)."""
    return _pueue(["start", "--group=" + quote(_checked_group(group))], pueue=pueue)


def build_log(*task_ids: int, lines: int = DEFAULT_LOG_LINES, pueue: str = "pueue") -> str:
    """``pueue log --json --lines N <id>...``: each task and the last ``lines`` of its output
    (pueue reads a running task's log as it grows)."""
    if not task_ids:
        raise ValueError("pueue log needs at least one task id: without, it shows every task")
    if _count(lines, "lines") < 1:
        raise ValueError("lines must be at least 1")
    ids = [str(_count(i, "task_id")) for i in task_ids]
    return _pueue(["log", "--json", f"--lines={lines}", *ids], pueue=pueue)


def build_group_add(group: str, parallel: int, *, pueue: str = "pueue") -> str:
    """``pueue group add --parallel N G``. pueue fails if the group exists already."""
    return _pueue(
        ["group", "add", f"--parallel={_parallel(parallel)}", quote(_checked_group(group))],
        pueue=pueue,
    )


def build_parallel(group: str, n: int, *, pueue: str = "pueue") -> str:
    """``pueue parallel --group G N``."""
    return _pueue(
        ["parallel", "--group=" + quote(_checked_group(group)), str(_parallel(n))],
        pueue=pueue,
    )


def _pueue(
    words: Sequence[str],
    *,
    pueue: str,
    env: Mapping[str, str] | None = None,
    inherit: Sequence[str] = (),
) -> str:
    """The full command line: pueue, given shell ``words``, in a minimal environment."""
    if not pueue:
        raise ConfigError("the pueue executable must not be empty")
    executable = remote_path(pueue) if "/" in pueue else quote(pueue)
    inherited = [_inherited(name) for name in (*_PASSED_THROUGH, *inherit)]
    extra = [_env_word(name, value) for name, value in (env or {}).items()]
    return " ".join(["env", "-i", *inherited, "LANG=C.UTF-8", *extra, executable, *words])


def _inherited(name: str) -> str:
    """A shell word that passes ``name`` on if it is set (and is nothing if it is not)."""
    return f'${{{checked_env_name(name)}+"{name}=${name}"}}'


def _env_word(name: str, value: str) -> str:
    return f"{checked_env_name(name)}={quote(value)}"


def _checked_group(group: str) -> str:
    if not group or group.startswith("-"):
        raise ConfigError("a pueue group name must not be empty or start with '-'")
    return group


def _count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer")
    return value


def _parallel(n: int) -> int:
    if _count(n, "parallel") < 1:  # pueue's CLI rejects 0 as well
        raise ValueError("parallel must be at least 1")
    return n
