"""The pueue adapter: read what pueue prints, build the commands we send it. Pure.

Reading
    ``parse_status``, ``parse_log``, ``parse_task_status`` and
    ``parse_add_output`` accept the output of pueue 3.x and 4.x. Output they cannot
    read raises ``PueueOutputError`` and nothing else, and never yields part of an
    answer: a status we cannot read is "unknown", never "the job failed".

Writing
    Every ``build_*`` function returns the pueue command line sent over SSH. It is
    parsed by shells twice::

        node:   sh -c '<pueue command line>'                              (level 1)
        pueue:  sh -c '<task command>'                                    (level 2)

    The builders do not limit how long pueue may take: ``HostConnection.run`` runs every
    command under the node's ``timeout`` (level 1 is its ``sh -c``), and tells a command
    it stopped from one that answered.

    Every value that reaches either level is single-quoted, so a case name can only
    ever be data. Paths under the remote home are written ``"$HOME"/'rest'``, because
    a quoted ``~`` is not expanded. pueue runs under ``env -i`` with a few variables
    passed through, so the SSH session's environment does not land in pueue's state
    file (``envs``) nor in the task. The login shell must be a POSIX shell.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from mqi_es.errors import ConfigError, MqiError
from mqi_es.ids import task_label  # the label format lives with the other identities
from mqi_es.outcome import Outcome, RemoteFailure, Unknown
from mqi_es.snapshot import (  # the label lookup is backend-neutral; re-exported here
    Found,
    GroupStatus,
    LabelLookup,
    LookupUnknown,
    NotFound,
    RemoteGroup,
    RemoteTask,
    StatusSnapshot,
    TaskLog,
    TaskResult,
    TaskState,
    find_task_by_label,
)

__all__ = [
    "DAEMON_DOWN_REASON",
    "DEFAULT_LOG_LINES",
    "MIN_VERSION",
    "SUPPORTED_MAJORS",
    "Found",
    "LabelLookup",
    "LookupUnknown",
    "NotFound",
    "PueueOutputError",
    "RemoteCommandTemplate",
    "StatusReading",
    "TaskEnvironment",
    "TaskStatus",
    "build_add",
    "build_group_add",
    "build_kill",
    "build_log",
    "build_observe",
    "build_parallel",
    "build_remove",
    "build_start_group",
    "build_status",
    "classify",
    "find_task_by_label",
    "gpu_index",
    "is_daemon_down",
    "parse_add_output",
    "parse_log",
    "parse_status",
    "parse_status_reading",
    "parse_task_status",
    "parse_version",
    "remote_path",
    "split_home",
    "task_label",
]


class PueueOutputError(MqiError):
    """Raised when pueue's output is malformed, truncated or of a shape we do not know."""


# --------------------------------------------------------------------------- reading

_NonNegative = Annotated[int, msgspec.Meta(ge=0)]
_ExitCode = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]  # pueue stores an i32


class _WireTask(msgspec.Struct):
    """A task as pueue serialises it; fields we do not use (envs, command, ...) are skipped."""

    id: _NonNegative
    group: str
    status: msgspec.Raw
    label: str | None = None
    created_at: str | None = None  # absent before pueue 3.0
    start: str | None = None  # v3 only: v4 keeps start and end inside the status
    end: str | None = None


class _WireGroup(msgspec.Struct):
    status: str
    parallel_tasks: _NonNegative


class _WireState(msgspec.Struct):
    tasks: dict[int, _WireTask]
    groups: dict[str, _WireGroup]


class _WireLogEntry(msgspec.Struct):
    task: _WireTask
    output: str


class _Phase(msgspec.Struct):
    """The body of a v4 status variant, e.g. ``{"enqueued_at":T,"start":T}``."""

    start: str | None = None
    end: str | None = None
    result: msgspec.Raw = msgspec.Raw()  # empty unless the body is a v4 Done


_STATE_DECODER = msgspec.json.Decoder(_WireState)
_LOG_DECODER = msgspec.json.Decoder(dict[int, _WireLogEntry])
_TAGGED_DECODER = msgspec.json.Decoder(str | dict[str, msgspec.Raw])
_PHASE_DECODER = msgspec.json.Decoder(_Phase)
_DONE_DECODER = msgspec.json.Decoder(str | _Phase)
_EXIT_CODE_DECODER = msgspec.json.Decoder(_ExitCode)
_TEXT_DECODER = msgspec.json.Decoder(str)

_STATES: dict[str, TaskState] = {
    "Queued": "queued",
    "Stashed": "stashed",
    "Running": "running",
    "Paused": "paused",
    "Locked": "locked",
}
_UNIT_RESULTS: dict[str, TaskResult] = {
    "Success": "success",
    "Killed": "killed",
    "Errored": "errored",
    "DependencyFailed": "dependency_failed",
}
_GROUP_STATUSES: dict[str, GroupStatus] = {
    "Running": "running",
    "Paused": "paused",
    "Reset": "reset",
}

# chrono's RFC 3339: 0, 3, 6 or 9 fraction digits; `Z`, `+00:00` or another offset.
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.(\d{1,9}))?(?:[Zz]|[+-]\d\d:\d\d)", re.ASCII
)


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """The meaning of one task ``status`` value; start and end are None in v3 output."""

    state: TaskState
    result: TaskResult | None = None
    exit_code: int | None = None
    detail: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def parse_status(raw: bytes | str) -> StatusSnapshot:
    """Read the output of ``pueue status --json`` (v3 or v4) or a pueue state file.

    :raises PueueOutputError: the output is malformed, truncated or of an unknown shape.
    """
    with _reading("status --json"):
        state = _STATE_DECODER.decode(raw)
        tasks = {key: _task(key, wire) for key, wire in state.tasks.items()}
        groups = {name: _group(wire) for name, wire in state.groups.items()}
    return StatusSnapshot(tasks=tasks, groups=groups)


def parse_log(raw: bytes | str) -> dict[int, TaskLog]:
    """Read the output of ``pueue log --json``: each task with the tail of its output.

    :raises PueueOutputError: the output is malformed, truncated or of an unknown shape.
    """
    with _reading("log --json"):
        entries = _LOG_DECODER.decode(raw)
        return {key: TaskLog(_task(key, e.task), e.output) for key, e in entries.items()}


def parse_task_status(raw: bytes | str) -> TaskStatus:
    """Read one task's ``status`` value, e.g. ``{"Done":{"result":{"Failed":1},...}}``.

    :raises PueueOutputError: the value is malformed or of an unknown shape.
    """
    with _reading("task status"):
        return _status(raw)


def parse_add_output(stdout: str) -> int:
    """Read the task id that ``pueue add --print-task-id`` printed.

    pueue 3 may print a version warning first, so the last non-empty line is the id.
    The human form ``New task added (id N).`` is rejected, not read as a fallback: we
    always pass ``--print-task-id``, so that text means something other than the command
    we built answered, and guessing is worse than asking again. The caller treats this
    error as an unknown outcome and finds the task by its label, which cannot duplicate it.

    :raises PueueOutputError: the last non-empty line is not a plain decimal id.
    """
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    # The length bound keeps int() clear of Python's limit on digits it will convert.
    if not lines or not re.fullmatch(r"[0-9]{1,20}", lines[-1], re.ASCII):
        raise PueueOutputError("`pueue add --print-task-id` did not end with a task id")
    return int(lines[-1])


MIN_VERSION = (3, 0, 0)  # tasks carry their creation time from 3.0 on: ids alone are reused
SUPPORTED_MAJORS = (3, 4)  # the versions whose output this release is known to read
_VERSION = re.compile(r"\bpueue (\d+)\.(\d+)\.(\d+)", re.ASCII)
_CLOCK_MARK = "mqi-clock "


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The version ``pueue --version`` printed (``pueue 4.0.4``), or None."""
    found = _VERSION.search(text)
    if found is None:
        return None
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


@dataclass(frozen=True, slots=True)
class StatusReading:
    """What one ``build_observe`` round trip returned."""

    node_time: datetime | None  # None: the node's ``date`` printed no time we can read
    version: tuple[int, int, int]
    snapshot: StatusSnapshot


def parse_status_reading(stdout: str) -> StatusReading:
    """Read the output of ``build_observe``: the node's clock, pueue's version, the status.

    :raises PueueOutputError: a part is missing, or the version or status is unreadable.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if len(lines) < 3 or not lines[0].startswith(_CLOCK_MARK):
        raise PueueOutputError("unreadable status output: the node's clock, pueue's version "
                               "and its status were expected")  # fmt: skip
    version = parse_version(lines[1])
    if version is None:
        raise PueueOutputError(f"`pueue --version` printed {lines[1][:60]!r}, not a version")
    # `status --json` is one line; pueue 3 may print a warning line before it.
    snapshot = parse_status(lines[-1])
    return StatusReading(_node_time(lines[0][len(_CLOCK_MARK) :]), version, snapshot)


def _node_time(text: str) -> datetime | None:
    """``date -u +%s.%N`` as a time; a ``date`` without ``%N`` (busybox) gives seconds."""
    seconds, _, fraction = text.strip().partition(".")
    if not re.fullmatch(r"[0-9]{1,12}", seconds, re.ASCII):
        return None
    moment = datetime.fromtimestamp(int(seconds), UTC)
    if re.fullmatch(r"[0-9]{1,9}", fraction, re.ASCII):
        moment += timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return moment


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn every way the decoding can fail into ``PueueOutputError``."""
    try:
        yield
    except PueueOutputError:
        raise
    # ValueError covers msgspec.DecodeError, datetime, RemoteTask and the UnicodeEncodeError
    # msgspec raises for lone surrogates; it raises RecursionError for deeply nested values.
    except (ValueError, RecursionError) as exc:
        raise PueueOutputError(f"unreadable `pueue {what}` output: {exc}") from exc


def _task(key: int, wire: _WireTask) -> RemoteTask:
    if key != wire.id:
        raise PueueOutputError(f"task listed under key {key} has id {wire.id}")
    status = _status(wire.status)
    return RemoteTask(
        id=wire.id,
        label=wire.label,
        group=wire.group,
        state=status.state,
        result=status.result,
        exit_code=status.exit_code,
        created_at=_timestamp(wire.created_at),
        start=status.start if status.start is not None else _timestamp(wire.start),
        end=status.end if status.end is not None else _timestamp(wire.end),
        detail=status.detail,
    )


def _group(wire: _WireGroup) -> RemoteGroup:
    status = _GROUP_STATUSES.get(wire.status)
    if status is None:
        raise PueueOutputError(f"unknown group status {wire.status[:40]!r}")
    return RemoteGroup(status=status, parallel_tasks=wire.parallel_tasks)


def _status(raw: bytes | str | msgspec.Raw) -> TaskStatus:
    # v3: "Queued" | "Running" | "Paused" | "Locked" | {"Stashed":{..}} | {"Done": R}
    # v4: every variant is an object, e.g. {"Running":{"enqueued_at":T,"start":T}}
    name, body = _variant(raw)
    if name == "Done" and body is not None:
        return _done(body)
    state = _STATES.get(name)
    if state is None:
        raise PueueOutputError(f"unknown task status {name[:40]!r}")
    if body is None:
        if state == "stashed":  # carries its enqueue_at in every version
            raise PueueOutputError("task status 'Stashed' without its body")
        return TaskStatus(state)
    phase = _PHASE_DECODER.decode(body)
    return TaskStatus(state, start=_timestamp(phase.start), end=_timestamp(phase.end))


def _done(body: msgspec.Raw) -> TaskStatus:
    # v3: the body is the result itself; v4: {"enqueued_at","start","end","result"}.
    phase = _DONE_DECODER.decode(body)
    if isinstance(phase, _Phase) and phase.result:
        result, exit_code, detail = _result(phase.result)
        return TaskStatus(
            "done", result, exit_code, detail, _timestamp(phase.start), _timestamp(phase.end)
        )
    result, exit_code, detail = _result(body)
    return TaskStatus("done", result, exit_code, detail)


def _result(raw: msgspec.Raw) -> tuple[TaskResult, int | None, str | None]:
    # "Success" | "Killed" | "Errored" | "DependencyFailed" | {"Failed":N} | {"FailedToSpawn":S}
    name, payload = _variant(raw)
    if payload is None and name in _UNIT_RESULTS:
        return _UNIT_RESULTS[name], None, None
    if payload is not None and name == "Failed":
        return "failed", _EXIT_CODE_DECODER.decode(payload), None
    if payload is not None and name == "FailedToSpawn":
        return "failed_to_spawn", None, _TEXT_DECODER.decode(payload)
    raise PueueOutputError(f"unknown task result {name[:40]!r}")


def _variant(raw: bytes | str | msgspec.Raw) -> tuple[str, msgspec.Raw | None]:
    """Split a serde externally tagged enum value into its name and its body, if any."""
    value = _TAGGED_DECODER.decode(raw)
    if isinstance(value, str):
        return value, None
    if len(value) != 1:
        raise PueueOutputError(f"expected one variant, found {len(value)} keys")
    ((name, body),) = value.items()
    return name, body


def _timestamp(text: str | None) -> datetime | None:
    """Read an RFC 3339 time, truncating nanoseconds to microseconds (msgspec would round).

    The pattern checks the shape strictly (``fromisoformat`` alone accepts other ISO 8601
    forms and times without an offset); ``fromisoformat`` checks the ranges.
    """
    if text is None:
        return None
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise PueueOutputError("timestamp is not RFC 3339 with an offset")
    start, end = match.span(1)
    if end - start > 6:
        text = text[: start + 6] + text[end:]
    return datetime.fromisoformat(text.upper())


# ------------------------------------------------------------------ outcome meaning

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


# --------------------------------------------------------------------------- writing

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
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def gpu_index(group: str) -> str:
    """The trailing digits of a group name (``gpu2`` -> ``2``), or ``""`` if there are none."""
    match = re.search(r"[0-9]+\Z", group, re.ASCII)
    return match.group() if match else ""


def split_home(base_dir: str) -> tuple[bool, str]:
    """Split a remote path into (relative to the remote home?, the rest), unquoted.

    ``~`` and ``~/x`` are under the home; so is a relative path, because SSH commands and
    SFTP both start there. ``~user`` is not supported.

    :raises ConfigError: the path is empty or starts with ``~user``.
    """
    if not base_dir:
        raise ConfigError("a remote path must not be empty")
    if base_dir == "~":
        return True, ""
    if base_dir.startswith("~/"):
        return True, base_dir[2:].lstrip("/")
    if base_dir.startswith("~"):
        raise ConfigError("a remote path may start with '~' or '~/', not '~user'")
    if base_dir.startswith("/"):
        return False, base_dir
    return True, base_dir


def remote_path(base_dir: str, *parts: str) -> str:
    """A shell word for ``base_dir/part/...``, e.g. ``"$HOME"/'my cases/case 1'``.

    ``"$HOME"`` rather than ``~``: a tilde is expanded only at the start of a word, so it
    would stay literal in ``--working-directory=~/x``.

    :raises ConfigError: see ``split_home``.
    :raises ValueError: a part is empty, or anything contains a NUL character.
    """
    in_home, rest = split_home(base_dir)
    if any(not part for part in parts):
        raise ValueError("path parts must not be empty")
    if parts:
        head = rest.rstrip("/")
        rest = "/".join(parts) if in_home and not head else "/".join([head, *parts])
    if not in_home:
        return _quote(rest)
    return '"$HOME"/' + _quote(rest) if rest else '"$HOME"'


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
            "--group=" + _quote(_checked_group(group)),
            "--label=" + _quote(label),
            "--working-directory=" + remote_path(working_dir),
            "--",
            _quote(task_command),
        ],
        pueue=pueue,
        env=env,
        inherit=env_from_node,
    )


def build_status(*, pueue: str = "pueue") -> str:
    """``pueue status --json`` for every group: filter with ``StatusSnapshot.tasks_in_group``."""
    return _pueue(["status", "--json"], pueue=pueue)


def build_observe(*, pueue: str = "pueue") -> str:
    """One round trip for a poll: the node's clock, then ``pueue --version``, then
    ``pueue status --json`` (read with ``parse_status_reading``).

    The clock read in the same round trip measures the node's skew and lets remote
    durations be computed on the node's clock alone; the version tells a pueue too old to
    tell its tasks apart before anything is submitted to it.
    """
    clock = "date -u " + _quote(f"+{_CLOCK_MARK}%s.%N")
    return f"{clock} && {build_version(pueue=pueue)} && {build_status(pueue=pueue)}"


def build_version(*, pueue: str = "pueue") -> str:
    """``pueue --version`` (prints e.g. ``pueue 4.0.4``)."""
    return _pueue(["--version"], pueue=pueue)


def build_kill(task_id: int, *, pueue: str = "pueue") -> str:
    """``pueue kill <id>``. pueue kills asynchronously: confirm through a later status."""
    return _pueue(["kill", str(_count(task_id, "task_id"))], pueue=pueue)


def build_remove(task_id: int, *, pueue: str = "pueue") -> str:
    """``pueue remove <id>``: drop a task that waits in the queue (pueue refuses running ones)."""
    return _pueue(["remove", str(_count(task_id, "task_id"))], pueue=pueue)


def build_start_group(group: str, *, pueue: str = "pueue") -> str:
    """``pueue start --group G``: resume a group (pueue pauses them when its daemon restarts)."""
    return _pueue(["start", "--group=" + _quote(_checked_group(group))], pueue=pueue)


def build_log(task_id: int, *, lines: int = DEFAULT_LOG_LINES, pueue: str = "pueue") -> str:
    """``pueue log --json --lines N <id>``: the task and the last ``lines`` of its output."""
    if _count(lines, "lines") < 1:
        raise ValueError("lines must be at least 1")
    return _pueue(
        ["log", "--json", f"--lines={lines}", str(_count(task_id, "task_id"))], pueue=pueue
    )


def build_group_add(group: str, parallel: int, *, pueue: str = "pueue") -> str:
    """``pueue group add --parallel N G``. pueue fails if the group exists already."""
    return _pueue(
        ["group", "add", f"--parallel={_parallel(parallel)}", _quote(_checked_group(group))],
        pueue=pueue,
    )


def build_parallel(group: str, n: int, *, pueue: str = "pueue") -> str:
    """``pueue parallel --group G N``."""
    return _pueue(
        ["parallel", "--group=" + _quote(_checked_group(group)), str(_parallel(n))],
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
    executable = remote_path(pueue) if "/" in pueue else _quote(pueue)
    inherited = [_inherited(name) for name in (*_PASSED_THROUGH, *inherit)]
    extra = [_env_word(name, value) for name, value in (env or {}).items()]
    return " ".join(["env", "-i", *inherited, "LANG=C.UTF-8", *extra, executable, *words])


def _inherited(name: str) -> str:
    """A shell word that passes ``name`` on if it is set (and is nothing if it is not)."""
    return f'${{{_checked_env_name(name)}+"{name}=${name}"}}'


def _env_word(name: str, value: str) -> str:
    return f"{_checked_env_name(name)}={_quote(value)}"


def _checked_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"{name[:40]!r} is not a valid environment variable name")
    return name


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


def _quote(value: str) -> str:
    """Single-quote ``value`` for a POSIX shell, always (even ``abc`` -> ``'abc'``).

    Always quoting keeps a value from ever being read as a reserved word (``if``), an
    assignment (``A=b``) or an alias.

    :raises ValueError: ``value`` contains NUL, which no argument can carry.
    """
    if "\0" in value:
        raise ValueError("a shell argument cannot contain a NUL character")
    return "'" + value.replace("'", "'\\''") + "'"


# --------------------------------------------------------------- the task template

_PLACEHOLDERS = ("case_dir", "case_id", "attempt", "group", "gpu_index", "label")


@dataclass(frozen=True, slots=True)
class RemoteCommandTemplate:
    """``hpc.remote_command``: the task command, with placeholders for case values.

    The text is trusted operator configuration; each substituted value is quoted, so
    placeholders must stand where a quoted word means what it says: not inside quotes,
    backticks, ``${...}``, ``$((...))``, comments or here-documents, and not after a
    backslash or ``$``. Write literal braces as ``{{`` and ``}}``.

    :raises ConfigError: empty or malformed text, an unknown placeholder, a format spec
        or conversion, or a placeholder where quoting cannot protect it.
    """

    text: str
    _pieces: tuple[tuple[str, str | None], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pieces", _template_pieces(self.text))

    def render(self, *, case_dir: str, case_id: str, attempt: int, group: str, label: str) -> str:
        """The task command for one case attempt (a ``sh -c`` script)."""
        values = {
            "case_dir": remote_path(case_dir),
            "case_id": _quote(case_id),
            "attempt": _quote(str(_count(attempt, "attempt"))),
            "group": _quote(group),
            "gpu_index": _quote(gpu_index(group)),
            "label": _quote(label),
        }
        return "".join(literal + (values[name] if name else "") for literal, name in self._pieces)


# Set by pueue (PUEUE_*) or needed by the pueue client itself: not the task's to change.
RESERVED_TASK_ENV = frozenset(_PASSED_THROUGH) | {"LANG"}
_ENV_PLACEHOLDERS = ("case_id", "attempt", "group", "gpu_index", "label")


@dataclass(frozen=True, slots=True)
class TaskEnvironment:
    """A host's ``task_env`` (values may use ``{gpu_index}``, ``{group}``, ``{case_id}``,
    ``{attempt}``, ``{label}``) and ``task_env_from_node`` (names copied from the node
    user's SSH environment). Each value is passed as one quoted word.

    :raises ConfigError: a name that is invalid or reserved, or a malformed value.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    from_node: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (*self.values, *self.from_node):
            _checked_env_name(name)
            if name in RESERVED_TASK_ENV or name.startswith("PUEUE_"):
                raise ConfigError(
                    f"task environment: {name} is set for every task already (by the node or "
                    "by pueue) and cannot be changed here"
                )
        both = set(self.values) & set(self.from_node)
        if both:
            raise ConfigError(
                f"task environment: {', '.join(sorted(both))} given in both task_env and "
                "task_env_from_node"
            )
        for name, value in self.values.items():
            self._pieces(name, value)

    def render(self, *, case_id: str, attempt: int, group: str, label: str) -> dict[str, str]:
        """The explicit variables of one case attempt."""
        known = {
            "case_id": case_id, "attempt": str(attempt), "group": group,
            "gpu_index": gpu_index(group), "label": label,
        }  # fmt: skip
        return {
            name: "".join(literal + (known[slot] if slot else "") for literal, slot in
                          self._pieces(name, value))
            for name, value in self.values.items()
        }  # fmt: skip

    @staticmethod
    def _pieces(name: str, value: str) -> list[tuple[str, str | None]]:
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ConfigError(
                f"task_env.{name} is malformed ({exc}); write literal braces as {{{{ and }}}}"
            ) from None
        pieces: list[tuple[str, str | None]] = []
        for literal, placeholder, spec, conversion in parsed:
            if placeholder is not None and placeholder not in _ENV_PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in _ENV_PLACEHOLDERS)
                raise ConfigError(
                    f"task_env.{name}: unknown placeholder {{{placeholder}}}; known: {known}"
                )
            if spec or conversion:
                raise ConfigError(f"task_env.{name}: placeholder {{{placeholder}}} takes no format")
            pieces.append((literal, placeholder))
        return pieces


def _template_pieces(text: str) -> tuple[tuple[str, str | None], ...]:
    if not text.strip():
        raise ConfigError("remote_command must not be empty")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(
            f"remote_command is malformed ({exc}); write literal braces as {{{{ and }}}}"
        ) from None
    pieces: list[tuple[str, str | None]] = []
    context = _ShellContext()
    for literal, name, spec, conversion in parsed:
        context.feed(literal)
        if name is not None:
            if name not in _PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in _PLACEHOLDERS)
                raise ConfigError(f"remote_command: unknown placeholder {{{name}}}; known: {known}")
            if spec or conversion:
                raise ConfigError(f"remote_command: placeholder {{{name}}} takes no format")
            if problem := context.unsafe_spot():
                raise ConfigError(
                    f"remote_command: placeholder {{{name}}} {problem}; values are quoted "
                    "for you, so write placeholders bare"
                )
            context.word()
        pieces.append((literal, name))
    if problem := context.unfinished():
        raise ConfigError(f"remote_command {problem}")
    return tuple(pieces)


# Contexts where a quoted value would not be one plain word; elsewhere ("top", "cmd" for
# $(...), "paren" for a subshell) it is.
_WHERE = {
    "sq": "is inside single quotes",
    "dq": "is inside double quotes",
    "bq": "is inside backticks",
    "ansi": "is inside $'...'",
    "param": "is inside ${...}",
    "arith": "is inside $((...))",
    "aparen": "is inside $((...))",
}
_WORD_BREAK = frozenset(" \t\n;&|()")


class _ShellContext:
    """Follows the POSIX shell's quoting state through the template's literal text.

    It tracks only what decides whether a quoted word stays one word. Constructs it does
    not follow (``case`` patterns, here-document bodies) make every later placeholder
    unsafe rather than guessed at.
    """

    def __init__(self) -> None:
        self.stack: list[str] = ["top"]
        self.escaped = False
        self.comment = False
        self.opaque: str | None = None
        self.prev = ""

    def unsafe_spot(self) -> str | None:
        if self.opaque:
            return f"follows {self.opaque}, which this check does not follow"
        if self.comment:
            return "is inside a comment"
        if self.escaped:
            return "follows a backslash"
        if self.prev == "$":
            return "follows '$'"
        return _WHERE.get(self.stack[-1])

    def word(self) -> None:
        """A placeholder's value was put here: a quoted word, which ends in a quote."""
        self.prev = "'"

    def unfinished(self) -> str | None:
        if self.escaped:
            return "ends with a backslash"
        if len(self.stack) > 1:
            return f"ends inside an unterminated quote, substitution or subshell ({self.stack[-1]})"
        return None

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            i = self._step(text, i)
            self.prev = text[i - 1]

    def _step(self, text: str, i: int) -> int:
        """Consume the token at ``i``; return the index after it."""
        c, top = text[i], self.stack[-1]
        if self.comment:
            self.comment = c != "\n"
            return i + 1
        if self.escaped:
            self.escaped = False
            return i + 1
        if top == "sq":
            if c == "'":
                self.stack.pop()
            return i + 1
        if c == "\\":
            self.escaped = True
            return i + 1
        if top in ("ansi", "bq"):
            if c == ("'" if top == "ansi" else "`"):
                self.stack.pop()
            return i + 1
        if c == "$":
            return self._dollar(text, i)
        if top == "dq":
            if c == '"':
                self.stack.pop()
            elif c == "`":
                self.stack.append("bq")
            return i + 1
        if top in ("arith", "aparen"):
            return self._arith(text, i)
        if top == "param" and c == "}":
            self.stack.pop()
            return i + 1
        return self._code(text, i)

    def _dollar(self, text: str, i: int) -> int:
        top = self.stack[-1]
        if text.startswith("$((", i):
            self.stack.append("arith")
            return i + 3
        if text.startswith("$(", i):
            self.stack.append("cmd")
            return i + 2
        if text.startswith("${", i):
            self.stack.append("param")
            return i + 2
        if text.startswith("$'", i) and top != "dq":
            self.stack.append("ansi")
            return i + 2
        return i + 1

    def _arith(self, text: str, i: int) -> int:
        c = text[i]
        if c == "(":
            self.stack.append("aparen")
        elif c == ")" and self.stack[-1] == "aparen":
            self.stack.pop()
        elif text.startswith("))", i):
            self.stack.pop()
            return i + 2
        return i + 1

    def _code(self, text: str, i: int) -> int:
        """A character in code (or in ``${...}``, whose word quotes like code)."""
        c, top = text[i], self.stack[-1]
        at_word_start = self.prev == "" or self.prev in _WORD_BREAK
        if c == "'":
            self.stack.append("sq")
        elif c == '"':
            self.stack.append("dq")
        elif c == "`":
            self.stack.append("bq")
        elif top == "param":
            pass
        elif c == "(":
            self.stack.append("paren")
        elif c == ")" and top in ("cmd", "paren"):
            self.stack.pop()
        elif c == "#" and at_word_start:
            self.comment = True
        elif text.startswith("<<<", i):
            return i + 3
        elif text.startswith("<<", i):
            self.opaque = self.opaque or "a here-document (<<)"
            return i + 2
        elif at_word_start and text.startswith("case", i) and text[i + 4 : i + 5].isspace():
            self.opaque = self.opaque or "a case statement"
        return i + 1
