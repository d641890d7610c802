"""Remote dispatch: the decision core's actions carried out on the hosts, their outcomes
recorded through the bus.

A submission is three steps, each recorded before the next begins: the attempt and its
slot (``StartSubmission``), the upload checked on the node (``RecordUpload``), then the
task's submission; the task itself is recorded by the next snapshot that shows it. A
step the ledger refuses, or whose outcome is unknown, ends the action there: nothing runs
on a node that is not on record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.local.failpoints import failpoint
from mqi_es.adapters.local.progress import ProgressBoard, Transfer
from mqi_es.app.bus import MessageBus
from mqi_es.app.ports import CaseFolders, RemoteHost, Views
from mqi_es.core.actions import (
    Action,
    Cancel,
    FailWithLog,
    Fetch,
    ReadProgress,
    Release,
    RemoveFolder,
    RemoveTasks,
    Submit,
)
from mqi_es.core.commands import AbandonAttempt, HoldCase, StartSubmission
from mqi_es.core.outcome import RemoteFailure, Unknown, summary
from mqi_es.core.policy import Policy
from mqi_es.core.reactions import (
    Declined,
    Fetched,
    Unsendable,
    Unwritable,
    Uploaded,
    after_fetch,
    after_folder_removal,
    after_log,
    after_progress,
    after_release,
    after_submit,
    after_task_removal,
    after_upload,
)
from mqi_es.core.remote import LogTails
from mqi_es.core.states import CaseState
from mqi_es.core.views import CaseView

TRANSFERS_PER_HOST = 2
FAILURE_LOG_LINES = 50  # of a failed task's output, kept with its failure
PROGRESS_LOG_LINES = 20  # of a running task's output, where its latest progress line is

log = logging.getLogger("mqi.daemon")


# What stopped an action: tried again later, with backoff.
Setback = Unknown | Unsendable | Unwritable | Declined


class Dispatcher:
    """Carries out actions on ``hosts``, recording through ``bus``.

    :param folders: the local case folders (what is sent)
    :param results_dir: where results are fetched to (``<case>/attempt-<n>`` below it)
    :param progress: where transfers show their progress (`mqi status`)
    """

    def __init__(
        self,
        bus: MessageBus,
        hosts: Mapping[str, RemoteHost],
        views: Views,
        policy: Policy,
        *,
        folders: CaseFolders,
        results_dir: Path,
        progress: ProgressBoard,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.hosts = hosts
        self.views = views
        self.policy = policy
        self.folders = folders
        self.results_dir = results_dir
        self.progress = progress
        self.clock = clock
        self.monotonic = monotonic
        # Cases whose results could not be written here at their last fetch, and why.
        self.unwritable: dict[str, str] = {}
        # Per host: bytes free where its cases go, as last read.
        self.disk_free: dict[str, int] = {}
        # Until then (monotonic seconds) a submission may still land on the case's host:
        # "not in the queue" does not count yet.
        self.settled_at: dict[str, float] = {}
        # Uploads and downloads take turns per host; kills, log reads and releases never
        # wait behind them. Each transfer itself copies several files at once.
        self._transfers = {name: asyncio.Semaphore(TRANSFERS_PER_HOST) for name in hosts}

    async def perform(self, action: Action) -> Setback | None:
        """Do it; returns the setback that stopped it (unknown, or refused), if one did."""
        host = self.hosts[action.host]
        match action:
            case Submit():
                return await self._submit(action, host)
            case Cancel(task=task):
                outcome = await host.cancel(task)
                log.info("%s: cancel of task %d sent: %s", who(action), task.id,
                         type(outcome).__name__)  # fmt: skip
            case Release(slot=slot):
                outcome = await host.release(slot)
                self.bus.handle(after_release(action, outcome))
            case FailWithLog(task=task):
                tails = await host.log_tails([task], lines=FAILURE_LOG_LINES)
                self.bus.handle(after_log(action, tails))
                return None  # the case failed whatever became of reading its log
            case Fetch():
                outcome = await self._fetch(action, host)
            case RemoveTasks(tasks=tasks):
                outcome = await host.remove_tasks(tasks)
                self.bus.handle(after_task_removal(action, outcome))
            case RemoveFolder(folder=folder):
                outcome = await host.remove_folder(folder)
                self.bus.handle(after_folder_removal(action, outcome))
            case ReadProgress(runs=runs):
                outcome = await host.log_tails([r.task for r in runs], lines=PROGRESS_LOG_LINES)
                latest, records = after_progress(action, outcome, self.policy.progress_pattern)
                tails = outcome.by_task if isinstance(outcome, LogTails) else {}
                self.progress.runs(latest, {r.case_id: tails[r.task.id] for r in runs
                                            if r.task.id in tails})  # fmt: skip
                self.bus.handle(records)
        if isinstance(outcome, RemoteFailure) and isinstance(action, RemoveTasks | RemoveFolder):
            return Declined(summary(outcome))  # not every cycle: with backoff
        return outcome if isinstance(outcome, Unknown | Unwritable) else None

    def keep_settling(self, submitting: Iterable[str]) -> None:
        """Forget the settling times of cases no longer submitting."""
        self.settled_at = {c: self.settled_at[c] for c in submitting if c in self.settled_at}

    async def _submit(self, action: Submit, host: RemoteHost) -> Setback | None:
        base = self.policy.hosts_by_name[action.host].remote_base_dir
        started = StartSubmission(
            case_id=action.case_id, host=action.host, slot=action.slot, remote_base_dir=base
        )
        if self.bus.handle([started]):
            return None  # refused: e.g. the slot went to another process first
        case = self.views.case(action.case_id)
        assert case is not None and case.remote_dir is not None and case.label is not None
        try:
            return await self._send(action, case, host)
        finally:
            self.settled_at[action.case_id] = (
                self.monotonic() + self.policy.submit_settle.total_seconds()
            )

    async def _send(self, action: Submit, case: CaseView, host: RemoteHost) -> Setback | None:
        assert case.remote_dir is not None and case.label is not None
        changed = await asyncio.to_thread(self.folders.changed, case.case_id, case.fingerprint)
        if changed is not None:
            self.bus.handle([HoldCase(case_id=case.case_id, reason=changed)])
            return None
        if (no_room := await self._no_room(action.host, host, case)) is not None:
            self.bus.handle([AbandonAttempt(case_id=case.case_id, not_before=None,
                                            charged=False, reason=no_room)])  # fmt: skip
            return None
        async with self._transfers[action.host]:
            try:
                uploaded = await host.upload(
                    self.folders.path(case.case_id), case.remote_dir,
                    still_registered=lambda: self.folders.changed(case.case_id, case.fingerprint),
                    progress=self._progress(case.case_id, "upload"),
                )  # fmt: skip
            finally:
                self.progress.finish(case.case_id)
        if isinstance(uploaded, Uploaded):
            self.progress.metrics.transfer("upload", uploaded.bytes)
        not_recorded = self.bus.handle(after_upload(case, uploaded, self.clock(), self.policy))
        if not isinstance(uploaded, Uploaded):
            return uploaded if isinstance(uploaded, Unknown | Unsendable) else None
        if case.case_id in not_recorded:
            return None  # what was sent is not on record: nothing is queued on it
        submitted = await host.submit(
            slot=action.slot, label=case.label, remote_dir=case.remote_dir,
            case_id=case.case_id, attempt=case.attempt, timeout_hours=case.timeout_hours,
        )  # fmt: skip
        failpoint("after_submit")
        self.bus.handle(after_submit(case, submitted, self.clock(), self.policy))
        return submitted if isinstance(submitted, Unknown) else None

    async def _fetch(self, action: Fetch, host: RemoteHost) -> object:
        case = self.views.case(action.case_id)
        if case is None or case.state is not CaseState.RETRIEVING:
            return None
        local = self.results_dir / case.case_id / f"attempt-{case.attempt}"
        async with self._transfers[action.host]:
            try:
                fetched = await host.fetch(
                    action.remote_dir, local, progress=self._progress(case.case_id, "download")
                )
            finally:
                self.progress.finish(case.case_id)
        failpoint("after_download")
        if isinstance(fetched, Fetched):
            self.progress.metrics.transfer("download", fetched.bytes)
        if isinstance(fetched, Unwritable):
            self.unwritable[case.case_id] = fetched.reason
        else:
            self.unwritable.pop(case.case_id, None)
        self.bus.handle(after_fetch(case, fetched))
        return fetched

    async def measure_disk(self, name: str) -> None:
        """Read how much room a host has left; what it cannot tell changes nothing."""
        free = await self.hosts[name].free_space()
        if isinstance(free, int):
            self.disk_free[name] = free

    async def _no_room(self, name: str, host: RemoteHost, case: CaseView) -> str | None:
        """Why the case must wait instead of being sent (its node would keep less room than
        it must), if it must; a node that cannot say how much room it has is tried."""
        await self.measure_disk(name)
        free = self.disk_free.get(name)
        reserve = self.policy.node_disk_reserve
        if free is None or free - case.total_bytes >= reserve:
            return None
        return (
            f"node disk low: host {name} has {free / 1e9:.1f} GB free, the case needs "
            f"{case.total_bytes / 1e9:.2f} GB and {reserve / 1e9:g} GB must stay free; it "
            "waits for room"
        )

    def _progress(self, case_id: str, direction: str) -> Callable[[int, int], None]:
        """Shows a transfer's progress in `mqi status` and logs it every 10%."""
        last = [-1]

        def report(done: int, total: int) -> None:
            if direction == "download" and 0 < done < total:
                failpoint("during_download")
            self.progress.update(Transfer(case_id, direction, done, total))
            tenth = 10 * done // total if total else 10
            if tenth != last[0]:
                last[0] = tenth
                log.info("case %s: %s %d/%d bytes", case_id, direction, done, total)

        return report


def who(action: Action) -> str:
    """Whom an action is about, as the log names it."""
    case_id = getattr(action, "case_id", None)
    return f"case {case_id}" if case_id else f"host {action.host}"
