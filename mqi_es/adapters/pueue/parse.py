"""Reading what pueue prints. Pure.

``parse_status``, ``parse_log``, ``parse_task_status`` and ``parse_add_output`` accept the
output of pueue 3.x and 4.x. Output they cannot read raises ``PueueOutputError`` and
nothing else, and never yields part of an answer: a status we cannot read is "unknown",
never "the job failed".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec

from mqi_es.adapters.pueue.model import (
    GroupStatus,
    PueueGroup,
    PueueLog,
    PueueState,
    PueueTask,
    TaskResult,
    TaskState,
)
from mqi_es.adapters.ssh.node_clock import CLOCK_MARK, node_time
from mqi_es.core.errors import MqiError


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


def parse_status(raw: bytes | str) -> PueueState:
    """Read the output of ``pueue status --json`` (v3 or v4) or a pueue state file.

    :raises PueueOutputError: the output is malformed, truncated or of an unknown shape.
    """
    with _reading("status --json"):
        state = _STATE_DECODER.decode(raw)
        tasks = {key: _task(key, wire) for key, wire in state.tasks.items()}
        groups = {name: _group(wire) for name, wire in state.groups.items()}
    return PueueState(tasks=tasks, groups=groups)


def parse_log(raw: bytes | str) -> dict[int, PueueLog]:
    """Read the output of ``pueue log --json``: each task with the tail of its output.

    :raises PueueOutputError: the output is malformed, truncated or of an unknown shape.
    """
    with _reading("log --json"):
        entries = _LOG_DECODER.decode(raw)
        return {key: PueueLog(_task(key, e.task), e.output) for key, e in entries.items()}


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


_REMOVED = re.compile(r"Tasks removed from list: ([0-9]{1,20}(?:, [0-9]{1,20})*)", re.ASCII)


def parse_removed(stdout: str) -> tuple[int, ...]:
    """The ids ``pueue remove`` says it removed: pueue answers (message_handler/remove.rs)
    ``Tasks removed from list: 1, 2`` and, for ids it refused, a line ``The command failed
    for tasks: 3``; when it refused them all, only that line (on stderr, exit 1).

    :raises PueueOutputError: no such line.
    """
    for line in stdout.splitlines():
        if found := _REMOVED.fullmatch(line.strip()):
            return tuple(int(i) for i in found.group(1).split(", "))
    raise PueueOutputError("`pueue remove` did not say which tasks it removed")


MIN_VERSION = (3, 0, 0)  # tasks carry their creation time from 3.0 on: ids alone are reused
SUPPORTED_MAJORS = (3, 4)  # the versions whose output this release is known to read
_VERSION = re.compile(r"\bpueue (\d+)\.(\d+)\.(\d+)", re.ASCII)


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
    state: PueueState


def parse_status_reading(stdout: str) -> StatusReading:
    """Read the output of ``build_observe``: the node's clock, pueue's version, the status.

    :raises PueueOutputError: a part is missing, or the version or status is unreadable.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if len(lines) < 3 or not lines[0].startswith(CLOCK_MARK):
        raise PueueOutputError("unreadable status output: the node's clock, pueue's version "
                               "and its status were expected")  # fmt: skip
    version = parse_version(lines[1])
    if version is None:
        raise PueueOutputError(f"`pueue --version` printed {lines[1][:60]!r}, not a version")
    # `status --json` is one line; pueue 3 may print a warning line before it.
    snapshot = parse_status(lines[-1])
    return StatusReading(node_time(lines[0][len(CLOCK_MARK) :]), version, snapshot)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn every way the decoding can fail into ``PueueOutputError``."""
    try:
        yield
    except PueueOutputError:
        raise
    # ValueError covers msgspec.DecodeError, datetime, PueueTask and the UnicodeEncodeError
    # msgspec raises for lone surrogates; it raises RecursionError for deeply nested values.
    except (ValueError, RecursionError) as exc:
        raise PueueOutputError(f"unreadable `pueue {what}` output: {exc}") from exc


def _task(key: int, wire: _WireTask) -> PueueTask:
    if key != wire.id:
        raise PueueOutputError(f"task listed under key {key} has id {wire.id}")
    status = _status(wire.status)
    return PueueTask(
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


def _group(wire: _WireGroup) -> PueueGroup:
    status = _GROUP_STATUSES.get(wire.status)
    if status is None:
        raise PueueOutputError(f"unknown group status {wire.status[:40]!r}")
    return PueueGroup(status=status, parallel_tasks=wire.parallel_tasks)


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
