"""The boundaries between the lifecycle and the outside world, in our own terms.

The daemon talks to every host through ``RemoteHost``, in the core's vocabulary: slots,
tasks found by our label, neutral task states (``mqi_es.core.remote``). Each backend is one
adapter under ``mqi_es.adapters``, chosen by a host's ``backend`` key. Each method returns one
of the three kinds of outcome and never raises for anything the host or the network does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from mqi_es.core.checks import Finding
from mqi_es.core.notices import Delivered, NotDelivered, Notice
from mqi_es.core.outcome import Ok, Progress, RemoteFailure, Unknown
from mqi_es.core.reactions import (
    Fetched,
    NothingToFetch,
    Removed,
    Unsendable,
    Unwritable,
    Uploaded,
)
from mqi_es.core.remote import LogTails, Observation, RemoteTask
from mqi_es.core.states import CaseState
from mqi_es.core.views import (
    AlarmView,
    CaseView,
    HostView,
    Leftover,
    NotificationView,
    SlotView,
)


class RemoteHost(Protocol):
    name: str

    async def observe(self) -> Observation:
        """One status query: ``Seen(snapshot, taken_at, node clock)`` or ``Unseen(reason,
        kind)``: what was seen (unreachable, queue service down, unreadable, incompatible)."""
        ...

    async def upload(
        self,
        local_dir: Path,
        remote_dir: str,
        *,
        still_registered: Callable[[], str | None] | None = None,
        progress: Progress | None = None,
    ) -> Uploaded | Unsendable | RemoteFailure | Unknown:
        """Copy a case folder to ``remote_dir``; it appears there only once complete and
        checked on the node against the digests of what was read. ``still_registered``
        (blocking) is asked before the copy is published: why the case no longer matches
        its registration, if it does not (then ``Unsendable``)."""
        ...

    async def submit(
        self, *, slot: str, label: str, remote_dir: str, case_id: str, attempt: int,
        timeout_hours: float | None = None,
    ) -> Ok | RemoteFailure | Unknown:  # fmt: skip
        """Queue the case's simulation in ``slot``, under ``label`` (``timeout_hours``: the
        case's own running-time limit, for a host that limits jobs itself); ``Ok.stdout`` is the
        task's id. The next snapshot finds the task by its label whatever this returns."""
        ...

    async def cancel(self, task: RemoteTask) -> Ok | RemoteFailure | Unknown:
        """Stop a task: killed if it started, removed if it waits. Confirmed only by a
        later snapshot showing it ended or gone."""
        ...

    async def remove_tasks(self, tasks: Sequence[RemoteTask]) -> Removed | RemoteFailure | Unknown:
        """Remove ended tasks from the queue; ``Removed`` names those that went."""
        ...

    async def remove_folder(self, folder: str) -> Ok | RemoteFailure | Unknown:
        """Remove a folder on the node with all it holds (a link is never followed);
        one already gone counts as removed."""
        ...

    async def free_space(self) -> int | RemoteFailure | Unknown:
        """Bytes still free where this host's cases go (``remote_base_dir``)."""
        ...

    async def release(self, slot: str) -> Ok | RemoteFailure | Unknown:
        """Let the host start what it holds in ``slot`` (e.g. a queue it paused)."""
        ...

    async def log_tails(
        self, tasks: Sequence[RemoteTask], *, lines: int
    ) -> LogTails | RemoteFailure | Unknown:
        """The last ``lines`` of the output of each of ``tasks``, in one remote command."""
        ...

    async def fetch(
        self, remote_dir: str, local_dir: Path, *, progress: Progress | None = None
    ) -> Fetched | NothingToFetch | Unwritable | RemoteFailure | Unknown:
        """Download the result files of a case into ``local_dir`` (complete or absent)."""
        ...

    async def check(self) -> list[Finding]:
        """Everything `mqi doctor` checks of this host (reachability, the queue software,
        the slots, the remote folder, the clock), each with how to fix it."""
        ...

    async def close(self) -> None: ...


class Channel(Protocol):
    """A way to tell a person (``mqi_es.adapters.notify``): never raises for anything the
    network or the receiver does."""

    name: str

    async def send(self, notice: Notice) -> Delivered | NotDelivered: ...


class CaseFolders(Protocol):
    """The local case folders the daemon sends."""

    def path(self, case_id: str) -> Path: ...

    def changed(self, case_id: str, registered: str) -> str | None:
        """Why the case must not be sent as it is now (its files differ from the
        fingerprint it was ``registered`` with, or cannot be read), if it must not.
        Blocking: it reads the whole folder."""
        ...


class Intake(Protocol):
    """The watch folder's intake: reports stable case folders to its sink until cancelled."""

    async def run(self) -> None: ...

    def reconsider(self, case_id: str) -> None:
        """Watch a registered case again until it is stable (it was put on hold)."""
        ...


class ViewSnapshot(Protocol):
    """One consistent reading of the views."""

    def cases(
        self, state: CaseState | None = None, *, active_only: bool = False
    ) -> list[CaseView]: ...

    def case(self, case_id: str) -> CaseView | None: ...

    def slots(self) -> list[SlotView]: ...

    def hosts(self) -> list[HostView]: ...

    def alarms(self, *, standing_only: bool = False) -> list[AlarmView]:
        """Alarms, newest first; ``standing_only``: those not cleared."""
        ...

    def notifications(self, *, due_only: bool = False) -> list[NotificationView]:
        """Notifications, oldest first; ``due_only``: those not delivered yet."""
        ...

    def leftovers(self, ended_before: datetime) -> list[Leftover]:
        """Folders on the nodes of the cases that ended before ``ended_before``."""
        ...

    def registered(self, case_ids: Iterable[str]) -> frozenset[str]:
        """Those of ``case_ids`` that are registered cases."""
        ...

    def name_claims(self) -> list[tuple[str, str | None]]:
        """Every case id with each name key it claims (None: it claims none)."""
        ...


class Views(Protocol):
    """The daemon's views of the log (``projections.live.LiveViews``): it brings them up to
    date after recording, and reads them to decide."""

    def catch_up(self) -> int: ...

    def snapshot(self) -> AbstractContextManager[ViewSnapshot]: ...

    def case(self, case_id: str) -> CaseView | None: ...

    def close(self) -> None: ...


class Lease(Protocol):
    """Leadership of the log, shared by a leader and its standbys. Each call may raise
    ``StoreUnreachable``: nothing is known then."""

    def campaign(self) -> int | None:
        """Take the lease if it has lapsed: the new term (the fencing token), or None."""
        ...

    def renew(self, term: int) -> bool:
        """Extend the lease of ``term``; False: it is not ours any more."""
        ...

    def release(self, term: int) -> None: ...

    def seen(self) -> None:
        """This daemon is alive (listed as a standby, or as the leader)."""
        ...

    def leave(self) -> None: ...

    def close(self) -> None: ...


class Follower(Protocol):
    """Wakes a standby when the log grows (the store's LISTEN/NOTIFY), until stopped;
    ``broken`` once it cannot listen any more (made again then)."""

    broken: bool

    def wait(self, timeout: float) -> bool:
        """Whether the log grew within ``timeout`` seconds (False: not known to)."""
        ...

    def close(self) -> None: ...
