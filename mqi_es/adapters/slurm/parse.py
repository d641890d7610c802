"""Reading what Slurm's commands print, into the core's neutral tasks. Pure.

Every parser raises ``SlurmOutputError`` on output it cannot read whole: an unreadable
answer is ``Unknown``, never a state. Slurm's states map onto the neutral ones
(``mqi_es.core.remote``): PENDING and its kin wait; RUNNING, COMPLETING and SIGNALING run;
SUSPENDED and STOPPED are suspended; COMPLETED succeeded; FAILED and OUT_OF_MEMORY failed
(with the exit code); TIMEOUT and DEADLINE timed out (Slurm stopped it at its limit);
CANCELLED was killed (by us, or by someone else: the core tells); NODE_FAIL, BOOT_FAIL,
PREEMPTED, REVOKED and LAUNCH_FAILED were lost by the infrastructure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mqi_es.adapters.slurm.commands import (
    FORGOTTEN_SUFFIX,
    LOGS_MARK,
    REFUSED_SUFFIX,
    SACCT_FIELDS,
    SACCT_MARK,
    SLOT_MARK,
    SQUEUE_FIELDS,
    SQUEUE_MARK,
)
from mqi_es.adapters.ssh.node_clock import CLOCK_MARK, node_time
from mqi_es.core.errors import MqiError
from mqi_es.core.ids import label_attempt
from mqi_es.core.remote import RemoteTask, TaskResult, TaskState


class SlurmOutputError(MqiError):
    """Slurm printed something we cannot read whole."""


_WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD",
                      "CONFIGURING", "RESIZING", "SPECIAL_EXIT"})  # fmt: skip
_RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
_SUSPENDED = frozenset({"SUSPENDED", "STOPPED"})
_ENDED: dict[str, TaskResult] = {
    "COMPLETED": "succeeded", "FAILED": "failed", "OUT_OF_MEMORY": "failed",
    "TIMEOUT": "timed_out", "DEADLINE": "timed_out", "CANCELLED": "killed",
    "NODE_FAIL": "lost", "BOOT_FAIL": "lost", "PREEMPTED": "lost", "REVOKED": "lost",
    "LAUNCH_FAILED": "lost",
}  # fmt: skip
_KNOWN = _WAITING | _RUNNING | _SUSPENDED | frozenset(_ENDED)


@dataclass(frozen=True, slots=True)
class SlurmJob:
    job_id: int
    name: str
    state: str  # Slurm's base state, e.g. "FAILED" ("CANCELLED by 0" -> "CANCELLED")
    slot: str
    exit_code: int | None  # the job's exit code, or 128 + the signal that ended it
    submitted: datetime | None
    started: datetime | None
    ended: datetime | None
    nodes: str
    reason: str


@dataclass(frozen=True, slots=True)
class SlurmReading:
    node_time: datetime | None
    jobs: dict[int, SlurmJob]  # ours and others' of this user: filter by label
    logs: frozenset[int]  # the jobs whose output file is still there
    refused: frozenset[int]  # the jobs Slurm started a second time, which refused to run
    forgotten: frozenset[int]  # the ended jobs housekeeping removed


def parse_observe(stdout: str) -> SlurmReading:
    """Read ``build_observe``'s output.

    :raises SlurmOutputError: a part is missing or a line cannot be read.
    """
    lines = stdout.splitlines()
    try:
        squeue_at, logs_at = lines.index(SQUEUE_MARK), lines.index(LOGS_MARK)
    except ValueError:
        raise SlurmOutputError("unreadable squeue output: its parts were not all there") from None
    if not lines or not lines[0].startswith(CLOCK_MARK) or not squeue_at < logs_at:
        raise SlurmOutputError("unreadable squeue output: the node's clock was expected first")
    jobs = {}
    for line in lines[squeue_at + 1 : logs_at]:
        if line.strip():
            job = _squeue_job(line)
            if job is not None:
                jobs[job.job_id] = job
    left = lines[logs_at + 1 :]
    return SlurmReading(node_time(lines[0][len(CLOCK_MARK) :]), jobs, _ids(left, ".out"),
                        _ids(left, REFUSED_SUFFIX), _ids(left, FORGOTTEN_SUFFIX))  # fmt: skip


def _ids(names: list[str], suffix: str) -> frozenset[int]:
    pattern = re.compile(r"([0-9]{1,12})" + re.escape(suffix), re.ASCII)
    return frozenset(int(m[1]) for name in names if (m := pattern.fullmatch(name)))


def _squeue_job(line: str) -> SlurmJob | None:
    fields = line.split("|", len(SQUEUE_FIELDS) - 2)  # the comment and the name stay together
    if len(fields) != len(SQUEUE_FIELDS) - 1:
        raise SlurmOutputError(f"unreadable squeue line ({len(fields)} fields): {line[:120]!r}")
    job_id, state, status, submitted, started, ended, nodes, reason, texts = (
        f.strip() for f in fields
    )
    shifted = SLOT_MARK in reason or not re.fullmatch(r"[0-9]{1,6}", status, re.ASCII)
    if shifted or not all(_is_time(t) for t in (submitted, started, ended)):
        raise SlurmOutputError(f"unreadable squeue line (a field is missing): {line[:120]!r}")
    if not re.fullmatch(r"[0-9]{1,12}", job_id, re.ASCII) or not texts.startswith(SLOT_MARK):
        return None  # not ours: another job of this user, an array or heterogeneous job
    comment, _, name = texts.partition("|")  # our comment holds no '|'; a name may
    code = _wait_status(status) if _base(state) in _ENDED else None
    return SlurmJob(int(job_id), name.strip(), _state(state), _slot(comment), code,
                    _time(submitted), _time(started), _time(ended), nodes, reason)  # fmt: skip


def parse_sacct(stdout: str) -> dict[int, SlurmJob]:
    """Read ``build_sacct``'s output: the jobs accounting knows, by id.

    :raises SlurmOutputError: the mark is missing or a line cannot be read.
    """
    lines = stdout.splitlines()
    if SACCT_MARK not in lines:
        raise SlurmOutputError("unreadable sacct output: its mark was not there")
    jobs = {}
    for line in lines[lines.index(SACCT_MARK) + 1 :]:
        if not line.strip():
            continue
        fields = line.split("|", len(SACCT_FIELDS) - 1)  # the name last: it may hold a '|'
        if len(fields) != len(SACCT_FIELDS):
            raise SlurmOutputError(f"unreadable sacct line: {line[:120]!r}")
        job_id, state, exit_code, submitted, started, ended, nodes, name = fields
        if not re.fullmatch(r"[0-9]{1,12}", job_id, re.ASCII):
            continue  # a step (123.batch): the allocation's own line says it all
        code = _exit_code(exit_code) if _base(state) in _ENDED else None
        jobs[int(job_id)] = SlurmJob(int(job_id), name, _state(state), "", code,
                                     _time(submitted), _time(started), _time(ended), nodes,
                                     "")  # fmt: skip
    return jobs


def parse_submit(stdout: str) -> int:
    """The job id ``sbatch --parsable`` printed (``123``, or ``123;cluster``).

    :raises SlurmOutputError: the last line is not a job id.
    """
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    found = re.fullmatch(r"([0-9]{1,12})(;[A-Za-z0-9_.-]+)?", lines[-1] if lines else "", re.ASCII)
    if found is None:
        raise SlurmOutputError("`sbatch --parsable` did not end with a job id")
    return int(found[1])


def parse_tails(stdout: str, mark: str) -> dict[int, str]:
    """Read ``build_tails``'s output (made with ``mark``): each job's lines, by id; a job
    without an output file is left out."""
    tails: dict[int, list[str]] = {}
    current: list[str] | None = None
    head = re.compile(re.escape(mark) + r" ([0-9]{1,12})( missing)?", re.ASCII)
    for line in stdout.splitlines():
        found = head.fullmatch(line)
        if found is None:
            if current is not None:
                current.append(line)
        elif found[2]:
            current = None
        else:
            current = tails.setdefault(int(found[1]), [])
    return {job_id: "\n".join(lines) for job_id, lines in tails.items()}


def to_task(job: SlurmJob, *, refused_rerun: bool = False) -> RemoteTask | None:
    """The neutral task of a job of ours (named by one of our labels); None otherwise.
    ``refused_rerun``: Slurm started it again and it refused (an infrastructure loss)."""
    if label_attempt(job.name) is None:
        return None
    if refused_rerun and job.state not in _WAITING | _RUNNING:
        return RemoteTask(
            id=job.job_id, label=job.name, slot=job.slot, state="ended", result="lost",
            exit_code=None, created_at=job.submitted, start=job.started, end=job.ended,
            detail="Slurm started the job a second time (its controller restarted); it ran "
            "only once, so the attempt is lost", node=job.nodes or None,
        )  # fmt: skip
    state: TaskState
    result: TaskResult | None = None
    detail = None
    if job.state in _WAITING or job.state not in _KNOWN:
        state = "waiting"  # an unknown state is not an end: the next polls tell more
    elif job.state in _RUNNING:
        state = "running"
    elif job.state in _SUSPENDED:
        state = "suspended"
    else:
        state, result = "ended", _ENDED[job.state]
        detail = f"Slurm {job.state}" + (
            f" ({job.reason})" if job.reason not in ("", "None") else ""
        )
    exit_code = (job.exit_code if job.exit_code else 1) if result == "failed" else None
    return RemoteTask(
        id=job.job_id, label=job.name, slot=job.slot, state=state, result=result,
        exit_code=exit_code, created_at=job.submitted, start=job.started,
        end=job.ended if state == "ended" else None, detail=detail, node=job.nodes or None,
    )  # fmt: skip


def _base(state: str) -> str:
    return state.split(" ", 1)[0].strip().upper()


def _state(state: str) -> str:
    base = _base(state)
    if not re.fullmatch(r"[A-Z_]{1,32}", base, re.ASCII):
        raise SlurmOutputError(f"unreadable job state {state[:40]!r}")
    return base


def _slot(comment: str) -> str:
    return comment.removeprefix(SLOT_MARK) if comment.startswith(SLOT_MARK) else ""


def _wait_status(text: str) -> int | None:
    """squeue's Exit_Code is the raw wait status: exit code << 8, or the signal."""
    if not re.fullmatch(r"[0-9]{1,6}", text, re.ASCII):
        return None
    status = int(text)
    return 128 + (status & 0x7F) if status & 0x7F else status >> 8


def _exit_code(text: str) -> int | None:
    """sacct's ExitCode ``code:signal``."""
    found = re.fullmatch(r"([0-9]{1,3}):([0-9]{1,3})", text, re.ASCII)
    if found is None:
        return None
    code, signal = int(found[1]), int(found[2])
    return 128 + signal if signal else code


_NO_TIME = frozenset({"", "N/A", "NONE", "None", "Unknown"})
_ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}", re.ASCII)


def _is_time(text: str) -> bool:
    return text in _NO_TIME or _ISO.fullmatch(text) is not None


def _time(text: str) -> datetime | None:
    """Slurm's ``2026-12-04T21:52:40`` (asked in UTC); N/A, Unknown, None: no time."""
    if _ISO.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)  # 10x strptime: 3 per job
    except ValueError:
        return None
