"""Process groups of tasks: recorded on disk, killed only when provably still ours.

Every task runs as the leader of its own process group. The daemon records each running
leader as ``<pid> <start time>`` (the start time in clock ticks, from ``/proc/<pid>/stat``)
so that whoever cleans up after a crashed daemon can kill the group without risking a
recycled pid: a group is killed only if its leader still has the recorded start time.

A record is named after its task id while the daemon runs the task. A daemon that starts
after a crash leaves the tasks it finds recorded running, as pueued does, and renames their
records ``orphan-<pid>``, so that a new task with the same id cannot overwrite them and
whoever stops the node still kills them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

ORPHAN_PREFIX = "orphan-"


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command name) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def record_group(folder: Path, task_id: int, pid: int) -> None:
    ticks = start_time(pid)
    if ticks is not None:
        (folder / str(task_id)).write_text(f"{pid} {ticks}\n")


def forget_group(folder: Path, task_id: int) -> None:
    (folder / str(task_id)).unlink(missing_ok=True)


def keep_as_orphans(folder: Path) -> list[int]:
    """Rename the task records a dead daemon left to ``orphan-<pid>``; kill nothing.

    Returns the pids of the recorded leaders that still run. Records of processes that are
    gone are removed.
    """
    orphans = []
    for record in sorted(folder.glob("*")):
        if record.name.startswith(ORPHAN_PREFIX):
            continue
        pid = _live_leader(record)
        if pid is None:
            record.unlink(missing_ok=True)
            continue
        record.replace(folder / f"{ORPHAN_PREFIX}{pid}")
        orphans.append(pid)
    return orphans


def kill_recorded_groups(folder: Path) -> list[int]:
    """SIGKILL every recorded group (orphans too) whose leader is still the recorded process.

    Returns the pids of the leaders that were killed. The records are removed.
    """
    killed = []
    for record in sorted(folder.glob("*")):
        pid = _live_leader(record)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        record.unlink(missing_ok=True)
    return killed


def _live_leader(record: Path) -> int | None:
    """The pid a record names, if that process still runs with the recorded start time."""
    try:
        pid_text, ticks_text = record.read_text().split()
        pid, ticks = int(pid_text), int(ticks_text)
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == ticks else None


def exit_with_parent(parent_pid: int) -> bool:
    """Ask Linux to SIGTERM us when the parent dies; False if it is already gone."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    return os.getppid() == parent_pid
