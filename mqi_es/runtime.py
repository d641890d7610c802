"""The daemon: a thin asyncio shell around the decision core.

Each cycle: poll every host that is due (one status query per host, whatever the number
of cases), bring the views up to date, ask ``reconcile`` what to do, record its facts and
start its remote actions in the background with bounded concurrency. A slow upload never
holds up the next cycle; a case with an action in flight is left alone until it ends.
Outcomes go through ``mqi_es.reactions`` back into records. Nothing here decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mqi_es.actions import (
    Action,
    FailWithLog,
    Fetch,
    Kill,
    Memory,
    Record,
    ResumeGroup,
    Submit,
)
from mqi_es.application import Ledger
from mqi_es.case_dir import fingerprint, verify_unchanged
from mqi_es.config import Config
from mqi_es.errors import CaseNotFound, ConcurrentUpdate, InvalidTransition, SlotError
from mqi_es.failpoints import failpoint
from mqi_es.ids import case_uuid, refusal_uuid
from mqi_es.intake import Arrival, Intake
from mqi_es.observations import NOT_POLLED, Observation, Seen, Unseen
from mqi_es.outcome import Unknown
from mqi_es.policy import HostPolicy, Policy
from mqi_es.ports import RemoteHost, Views
from mqi_es.progress import ProgressBoard, Transfer, transfers_file
from mqi_es.reactions import Uploaded, after_add, after_fetch, after_log, after_resume, after_upload
from mqi_es.reconcile import World, reconcile
from mqi_es.states import CaseState
from mqi_es.views import CaseView

DAEMON = "daemon"
SHUTDOWN_GRACE_SECONDS = 10.0
TRANSFERS_PER_HOST = 2
QUERY_WAIT_SECONDS = 5.0  # how long a cycle waits at least for the hosts' status queries

log = logging.getLogger("mqi.daemon")


def utcnow() -> datetime:
    return datetime.now(UTC)


def policy_from(config: Config) -> Policy:
    """The lifecycle's settings, read once from the configuration."""
    loop = config.main_loop
    return Policy(
        hosts=tuple(HostPolicy(h.name, h.groups, h.remote_base_dir) for h in config.hosts),
        timeout=timedelta(hours=loop.running_case_timeout_hours),
        max_attempts=loop.max_attempts,
        missing_grace=loop.missing_task_grace_polls,
        retry_backoff=timedelta(seconds=loop.retry_backoff_seconds),
        retry_backoff_cap=timedelta(seconds=loop.retry_backoff_cap_seconds),
        kill_confirm_timeout=timedelta(seconds=loop.kill_confirm_timeout_seconds),
        kill_resend_interval=timedelta(seconds=max(loop.sleep_interval_seconds, 5.0)),
        submit_settle=timedelta(
            seconds=max((h.command_timeout_seconds for h in config.hosts), default=30.0) + 10
        ),
    )


@dataclass
class _HostPoll:
    """When a host is next polled: every cycle, or later with capped backoff after failures.
    ``query`` is a status query still under way (a slow host never holds up the others)."""

    failures: int = 0
    due: datetime | None = None
    last: Observation = NOT_POLLED
    query: asyncio.Task[Observation] | None = None


class Daemon:
    """Runs the lifecycle for every configured host until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        hosts: Mapping[str, RemoteHost],
        views: Views,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.hosts = dict(hosts)
        self.clock = clock
        self.policy = policy_from(config)
        self.projection = views
        self.memory = Memory()
        self.started_at = clock()
        self.settled_at: dict[str, datetime] = {}
        self._polls = {name: _HostPoll() for name in self.hosts}
        self._inflight: dict[object, asyncio.Task[None]] = {}
        # Uploads and downloads take turns per host; kills, log reads and resumes never
        # wait behind them. Each transfer itself copies max_parallel_transfers files at once.
        self._transfers = {h.name: asyncio.Semaphore(TRANSFERS_PER_HOST) for h in config.hosts}
        self._backoff_cap = {h.name: h.reconnect_backoff_cap_seconds for h in config.hosts}
        self._interval = config.main_loop.sleep_interval_seconds
        self._intake: Intake | None = None
        self.progress = ProgressBoard(transfers_file(config.database.path))

    # --- lifecycle of the process ------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._register_configuration()
        self.projection.catch_up()
        await self._report_missing_groups()
        intake = asyncio.create_task(self._run_intake(), name="intake")
        log.info("daemon started: %d host(s), watching %s", len(self.hosts),
                 self.config.scanner.watch_path)  # fmt: skip
        try:
            while not stop.is_set():
                intake = self._keep_alive(intake)
                try:
                    await self.cycle()
                except Exception:  # e.g. the disk is full: say so, and try again next cycle
                    log.exception("cycle failed; retrying in %.1f s", self._interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval)
        finally:
            intake.cancel()
            await self._drain()
            queries = [p.query for p in self._polls.values() if p.query is not None]
            for task in [intake, *queries]:
                task.cancel()
            await asyncio.gather(intake, *queries, return_exceptions=True)
            for host in self.hosts.values():
                await host.close()
            self.projection.close()
            log.info("daemon stopped")

    def _register_configuration(self) -> None:
        for host in self.config.hosts:
            self.ledger.register_host(host.name, host.host, actor=DAEMON)
            for group in host.groups:
                self.ledger.register_slot(host.name, group, actor=DAEMON)

    async def _report_missing_groups(self) -> None:
        for host in self.config.hosts:
            missing = await self.hosts[host.name].missing_groups(host.groups)
            if isinstance(missing, list) and missing:
                log.error(
                    "host %s: configured pueue groups %s do not exist on the node; create "
                    "them with `pueue group add NAME` and `pueue parallel 1 -g NAME`",
                    host.name, ", ".join(missing),
                )  # fmt: skip

    def _keep_alive(self, intake: asyncio.Task[None]) -> asyncio.Task[None]:
        """The intake never ends by itself: if it failed, say why and start it again."""
        if not intake.done():
            return intake
        error = intake.exception()
        log.error("the watch folder intake stopped (%s); restarting it", error or "no error")
        return asyncio.create_task(self._run_intake(), name="intake")

    async def _run_intake(self) -> None:
        scanner = self.config.scanner
        self._intake = Intake(
            scanner.watch_path,
            quiescence=scanner.quiescence_period_seconds,
            force_polling=scanner.force_polling,
            poll_delay_ms=scanner.poll_delay_ms,
            ready_marker=scanner.ready_marker,
            rescan_interval=scanner.rescan_interval_seconds,
            is_known=self._is_known,
            sink=_IntakeRecorder(self),
        )
        await self._intake.run()

    async def _drain(self) -> None:
        """Let actions in flight finish for a moment, then cancel them: whatever was cut
        short is recovered by the lifecycle rules at the next start."""
        pending = list(self._inflight.values())
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    # --- one cycle ---------------------------------------------------------------------

    async def cycle(self) -> None:
        now = self.clock()
        observations = await self._observe(now)
        self.projection.catch_up()
        with self.projection.snapshot() as views:
            cases = views.cases(active_only=True)
            slots = [s for s in views.slots() if s.host in self.policy.hosts_by_name]
            hosts = views.hosts()
        world = World(
            cases=cases, slots=slots, hosts=hosts, observations=observations,
            started_at=self.started_at, busy=self._busy(), settled_at=dict(self.settled_at),
        )  # fmt: skip
        decision = reconcile(world, now, self.policy, self.memory)
        self.memory = decision.memory
        for alarm in decision.alarms:
            subject = f"case {alarm.case_id}: " if alarm.case_id else ""
            log.error("ALARM %s%s", subject, alarm.message)
        refused = self._apply(decision.records)
        for action in decision.actions:
            if getattr(action, "case_id", None) not in refused:  # its premise was not recorded
                self._start(action)
        self.settled_at = {
            c.case_id: at
            for c in cases
            if c.state is CaseState.SUBMITTING and (at := self.settled_at.get(c.case_id))
        }

    async def _observe(self, now: datetime) -> dict[str, Observation]:
        """This cycle's observation of every host: one status query per host that is due.

        The cycle waits for the queries a while; a host still silent then is not seen this
        cycle (its query goes on, and its answer serves a later cycle), so one hanging node
        never stalls the others' monitoring, kills and allocations.
        """
        for name, poll in self._polls.items():
            if poll.query is None and (poll.due is None or poll.due <= now):
                poll.query = asyncio.create_task(self.hosts[name].observe(), name=f"poll {name}")
        running = [p.query for p in self._polls.values() if p.query is not None]
        if running:
            await asyncio.wait(running, timeout=max(self._interval, QUERY_WAIT_SECONDS))
        seen: dict[str, Observation] = {}
        for name, poll in self._polls.items():
            if poll.query is None:
                seen[name] = poll.last  # not due: still backing off after a failure
            elif not poll.query.done():
                seen[name] = Unseen("the status query has not answered yet")
            else:
                poll.last = seen[name] = poll.query.result()
                poll.query = None
                self._schedule(name, poll, now)
        return seen

    def _schedule(self, name: str, poll: _HostPoll, now: datetime) -> None:
        if isinstance(poll.last, Seen):
            poll.failures, poll.due = 0, None
            return
        poll.failures += 1
        delay = min(self._backoff_cap[name], self._interval * 2 ** (poll.failures - 1))
        poll.due = now + timedelta(seconds=delay)
        log.warning("host %s: not seen (%s); next poll in %.0f s", name, poll.last.reason, delay)

    # --- recording facts ---------------------------------------------------------------

    def _note_unknown(self, case_id: str, step: str, outcome: object) -> None:
        """An unknown outcome changes nothing, but the operator should see why it recurs."""
        if isinstance(outcome, Unknown):
            log.warning("case %s: %s outcome unknown (%s); trying again later", case_id, step,
                        outcome.reason)  # fmt: skip

    def _apply(self, records: Iterable[Record]) -> set[str | None]:
        """Record each fact; one the ledger refuses (the state moved meanwhile, e.g. an
        operator's command) is skipped: the next cycle looks at the new state. Returns the
        subjects (case ids) of the refused records."""
        refused_for: set[str | None] = set()
        any_applied = False
        for record in records:
            try:
                getattr(self.ledger, record.command)(**record.kwargs, actor=DAEMON)
            except (InvalidTransition, SlotError, ConcurrentUpdate, CaseNotFound) as refused:
                log.info("%s: %s not recorded: %s", _subject(record), record.command, refused)
                refused_for.add(record.case_id)
                continue
            any_applied = True
            log.info("%s: %s", _subject(record), _describe(record))
            failpoint(f"after:{record.command}")
        if any_applied:
            self.projection.catch_up()
        return refused_for

    # --- remote actions ----------------------------------------------------------------

    def _busy(self) -> frozenset[str]:
        return frozenset(key for key in self._inflight if isinstance(key, str))

    def _start(self, action: Action) -> None:
        key = _key(action)
        if key in self._inflight:
            return
        task = asyncio.create_task(self._guarded(action), name=f"{type(action).__name__}")
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))

    async def _guarded(self, action: Action) -> None:
        try:
            await self._perform(action)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not kill the daemon: log it, the next cycle retries
            log.exception("%s failed unexpectedly", type(action).__name__)

    async def _perform(self, action: Action) -> None:
        host = self.hosts[action.host]
        match action:
            case Submit():
                await self._submit(action, host)
            case Kill(task_id=task_id, running=running):
                outcome = await host.kill(task_id, running=running)
                log.info("%s: kill of task %d sent: %s", _who(action), task_id,
                         type(outcome).__name__)  # fmt: skip
            case ResumeGroup(group=group):
                self._apply(after_resume(action, await host.resume_group(group)))
            case FailWithLog(task_id=task_id):
                self._apply(after_log(action, await host.log_tail(task_id)))
            case Fetch():
                await self._fetch(action, host)

    async def _submit(self, action: Submit, host: RemoteHost) -> None:
        base = self.policy.hosts_by_name[action.host].remote_base_dir
        started = Record.of(
            "start_submission", case_id=action.case_id, host=action.host, group=action.group,
            remote_base_dir=base,
        )  # fmt: skip
        if self._apply([started]):
            return  # refused: e.g. the slot went to another process first
        case = self.projection.case(action.case_id)
        assert case is not None and case.remote_dir is not None and case.label is not None
        try:
            local = self.config.scanner.watch_path / case.case_id
            changed = await asyncio.to_thread(self._content_changed, case, local)
            if changed is not None:
                if self._intake is not None:
                    self._intake.reconsider(case.case_id)
                self._apply([Record.of("hold_case", case_id=case.case_id, reason=changed)])
                return
            async with self._transfers[action.host]:
                try:
                    uploaded = await host.upload(
                        local, case.remote_dir, progress=self._progress(case.case_id, "upload")
                    )
                finally:
                    self.progress.finish(case.case_id)
            self._note_unknown(case.case_id, "upload", uploaded)
            self._apply(after_upload(case, uploaded, self.clock(), self.policy))
            if not isinstance(uploaded, Uploaded):
                return
            added = await host.add(
                group=action.group, label=case.label, remote_dir=case.remote_dir,
                case_id=case.case_id, attempt=case.attempt,
            )  # fmt: skip
            failpoint("after_add")
            self._note_unknown(case.case_id, "pueue add", added)
            self._apply(after_add(case, added, self.clock(), self.policy))
        finally:
            # Until then a `pueue add` may still land: "not in the queue" does not count.
            self.settled_at[action.case_id] = self.clock() + self.policy.submit_settle

    def _content_changed(self, case: CaseView, local: Path) -> str | None:
        """Why the case must not be sent as it is now, if it must not (a full scan of the
        folder: run it off the event loop)."""
        try:
            unchanged = verify_unchanged(
                local, case.fingerprint, ready_marker=self.config.scanner.ready_marker
            )
        except OSError as e:
            return f"the case folder cannot be read: {e.strerror or e}"
        if unchanged:
            return None
        return "its content changed after registration; waiting until it is stable again"

    async def _fetch(self, action: Fetch, host: RemoteHost) -> None:
        case = self.projection.case(action.case_id)
        if case is None or case.state is not CaseState.RETRIEVING:
            return
        local = self.config.results.local_path / case.case_id / f"attempt-{case.attempt}"
        async with self._transfers[action.host]:
            try:
                fetched = await host.fetch(
                    action.remote_dir, local, progress=self._progress(case.case_id, "download")
                )
            finally:
                self.progress.finish(case.case_id)
        failpoint("after_download")
        self._note_unknown(case.case_id, "download", fetched)
        self._apply(after_fetch(case, fetched))

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

    # --- intake ------------------------------------------------------------------------

    def _is_known(self, name: str) -> bool:
        if self.ledger.knows(refusal_uuid(name)):
            return True
        if not self.ledger.knows(case_uuid(name)):
            return False
        return self.ledger.case(name).state is not CaseState.HELD  # held: keep watching


class _IntakeRecorder:
    """Records what the intake reports (the intake itself logs one line for each)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._ledger = daemon.ledger

    def case_ready(self, arrival: Arrival) -> None:
        try:
            case = self._ledger.case(arrival.case_id)
        except CaseNotFound:
            self._ledger.detect_case(
                arrival.case_id, file_count=arrival.file_count,
                total_bytes=arrival.total_bytes, fingerprint=arrival.digest, actor=DAEMON,
            )  # fmt: skip
            return
        if case.state is CaseState.HELD:
            self._ledger.restabilize_case(
                arrival.case_id, file_count=arrival.file_count,
                total_bytes=arrival.total_bytes, fingerprint=arrival.digest, actor=DAEMON,
                reason="stable again",
            )  # fmt: skip
            log.info("case %s: stable again, released from hold", arrival.case_id)

    def case_refused(self, raw_name_repr: str, reason: str) -> None:
        self._ledger.refuse_entry(raw_name_repr, reason=reason, actor=DAEMON)

    def case_held(self, name: str, reason: str) -> None:
        try:
            case = self._ledger.case(name)
        except CaseNotFound:
            found = fingerprint(self._daemon.config.scanner.watch_path / name)
            self._ledger.detect_case(
                name, file_count=found.file_count, total_bytes=found.total_bytes,
                fingerprint=found.digest, actor=DAEMON, hold_reason=reason,
            )  # fmt: skip
        else:
            if case.state is not CaseState.WAITING:
                return
            self._ledger.hold_case(name, actor=DAEMON, reason=reason)


def _key(action: Action) -> object:
    match action:
        case ResumeGroup(host=host, group=group):
            return ("resume", host, group)
        case Kill(host=host, task_id=task_id, case_id=None):
            return ("kill", host, task_id)
        case _:
            return action.case_id  # one action per case at a time


def _who(action: Action) -> str:
    case_id = getattr(action, "case_id", None)
    return f"case {case_id}" if case_id else f"host {action.host}"


def _subject(record: Record) -> str:
    args = record.kwargs
    if "case_id" in args:
        return f"case {args['case_id']}"
    if "group" in args:
        return f"gpu {args['host']}/{args['group']}"
    return f"host {args.get('name', '?')}"


def _describe(record: Record) -> str:
    shown = {k: v for k, v in record.kwargs.items() if k not in ("case_id", "log_tail")}
    return f"{record.command} " + " ".join(f"{k}={_short(v)}" for k, v in shown.items())


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."
