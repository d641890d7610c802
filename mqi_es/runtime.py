"""The daemon: a thin asyncio shell around the decision core.

Each cycle: poll every host that is due (one status query per host, whatever the number
of cases), bring the views up to date, ask ``reconcile`` what to do, record its facts and
start its remote actions in the background with bounded concurrency. A slow upload never
holds up the next cycle; a case with an action in flight is left alone until it ends.
Outcomes go through ``mqi_es.core.reactions`` back into records. Nothing here decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mqi_es.adapters.backends import slots_of
from mqi_es.adapters.local.failpoints import failpoint
from mqi_es.adapters.local.progress import ProgressBoard, Transfer, live_file
from mqi_es.adapters.local.repeats import Repeats
from mqi_es.adapters.watch.case_dir import Fingerprint, verify_unchanged
from mqi_es.adapters.watch.intake import Arrival, Intake
from mqi_es.app.ledger import Ledger
from mqi_es.app.ports import RemoteHost, Views
from mqi_es.config import Config
from mqi_es.core.actions import (
    Action,
    Cancel,
    FailWithLog,
    Fetch,
    Memory,
    Record,
    Release,
    Submit,
)
from mqi_es.core.backoff import Backoff
from mqi_es.core.errors import (
    CaseNotFound,
    ConcurrentUpdate,
    InvalidTransition,
    LogRefused,
    NameClash,
    SlotError,
)
from mqi_es.core.ids import case_uuid, name_key, refusal_uuid
from mqi_es.core.outcome import Unknown
from mqi_es.core.policy import HostPolicy, Policy
from mqi_es.core.reactions import (
    Refused,
    Uploaded,
    after_fetch,
    after_log,
    after_release,
    after_submit,
    after_upload,
)
from mqi_es.core.reconcile import World, reconcile
from mqi_es.core.remote import NOT_POLLED, Blindness, Observation, Seen, Unseen
from mqi_es.core.states import CaseState
from mqi_es.core.views import CaseView

DAEMON = "daemon"
SHUTDOWN_GRACE_SECONDS = 10.0
TRANSFERS_PER_HOST = 2
QUERY_WAIT_SECONDS = 5.0  # how long a cycle waits at least for the hosts' status queries
RETRY_CAP_SECONDS = 300.0  # the longest wait before retrying an action, a cycle, the intake
INTAKE_SETTLED_SECONDS = 60.0  # an intake up this long has recovered: its failures are forgotten

log = logging.getLogger("mqi.daemon")


def utcnow() -> datetime:
    return datetime.now(UTC)


def policy_from(config: Config) -> Policy:
    """The lifecycle's settings, read once from the configuration."""
    loop = config.main_loop
    return Policy(
        hosts=tuple(HostPolicy(h.name, slots_of(h), h.remote_base_dir) for h in config.hosts),
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
        max_skew=timedelta(seconds=loop.max_clock_skew_seconds),
    )


@dataclass
class _HostPoll:
    """When a host is next polled: every cycle, or later with capped backoff after failures
    (monotonic seconds). ``query`` is a status query still under way (a slow host never
    holds up the others)."""

    failures: int = 0
    due: float | None = None
    last: Observation = NOT_POLLED
    query: asyncio.Task[Observation] | None = None
    asked_at: float = 0.0  # when ``query`` was sent


class Daemon:
    """Runs the lifecycle for every configured host until ``stop`` is set.

    ``clock`` (UTC wall time) dates the facts; ``monotonic`` measures every local wait, so
    a jump of the wall clock cannot stop polling or hasten a retry. ``check_log`` is asked
    every cycle whether the log file is still the one being written: if not, the daemon
    stops (``LogRefused``) rather than record facts nobody will read.
    """

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        hosts: Mapping[str, RemoteHost],
        views: Views,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        check_log: Callable[[], None] = lambda: None,
        query_wait: float = QUERY_WAIT_SECONDS,
    ) -> None:
        self.config = config
        self.check_log = check_log  # raises LogRefused once the log is not ours any more
        self.ledger = ledger
        self.hosts = dict(hosts)
        self.clock = clock
        self.monotonic = monotonic
        self.policy = policy_from(config)
        self.projection = views
        self.memory = Memory()
        self.started_at = monotonic()
        self.settled_at: dict[str, float] = {}
        self._polls = {name: _HostPoll() for name in self.hosts}
        self._inflight: dict[object, asyncio.Task[None]] = {}
        # Uploads and downloads take turns per host; kills, log reads and resumes never
        # wait behind them. Each transfer itself copies max_parallel_transfers files at once.
        self._transfers = {h.name: asyncio.Semaphore(TRANSFERS_PER_HOST) for h in config.hosts}
        self._backoff_cap = {h.name: h.reconnect_backoff_cap_seconds for h in config.hosts}
        self._interval = config.main_loop.sleep_interval_seconds
        self._query_wait = max(self._interval, query_wait)
        self._retry = Backoff(base=self._interval, cap=max(self._interval, RETRY_CAP_SECONDS))
        self._repeats = Repeats(log)
        self._intake: Intake | None = None
        self._intake_started = 0.0
        self.progress = ProgressBoard(live_file(config.database.path))

    # --- lifecycle of the process ------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.ledger.start_log()
        self._register_configuration()
        self.projection.catch_up()
        self._claim_names()
        intake = asyncio.create_task(self._run_intake(), name="intake")
        log.info("daemon started: %d host(s), watching %s", len(self.hosts),
                 self.config.scanner.watch_path)  # fmt: skip
        try:
            while not stop.is_set():
                intake = self._keep_alive(intake)
                wait = self._interval
                try:
                    await self.cycle()
                except LogRefused as exc:
                    log.critical("%s", exc)
                    raise
                except Exception as exc:  # e.g. the disk is full: say so once, back off
                    wait = self._retry.failed("cycle", self.monotonic())
                    self._repeats.failed(
                        "cycle", "a cycle failed: %r; retrying with backoff", exc,
                        level=logging.ERROR, exc_info=exc,
                    )  # fmt: skip
                else:
                    self._retry.succeeded("cycle")
                    self._repeats.ended("cycle", "cycles run again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
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

    def _claim_names(self) -> None:
        """Cases registered before their names were claimed (an earlier release, or
        another ``folds_case``) claim them now, so no later folder can clash with them."""
        with self.projection.snapshot() as views:
            claims = views.name_claims()
        fold = self.ledger.fold_case
        held = {(case_id, key) for case_id, key in claims}
        unclaimed = sorted({c for c, _ in claims if (c, name_key(c, fold_case=fold)) not in held})
        if not unclaimed:
            return
        for clash in self.ledger.claim_names(unclaimed, actor=DAEMON):
            log.error("ALARM case %s: %s", clash.name, clash)
        log.info("claimed the names of %d earlier case(s)", len(unclaimed))
        self.projection.catch_up()

    def _register_configuration(self) -> None:
        for host in self.config.hosts:
            self.ledger.register_host(host.name, host.host, actor=DAEMON)
            for slot in slots_of(host):
                self.ledger.register_slot(host.name, slot, actor=DAEMON)

    def _keep_alive(self, intake: asyncio.Task[None]) -> asyncio.Task[None]:
        """The intake never ends by itself: if it failed, say why (once) and start it
        again, with backoff while it keeps failing."""
        now = self.monotonic()
        if not intake.done():
            if now - self._intake_started > INTAKE_SETTLED_SECONDS:
                self._retry.succeeded("intake")
                self._repeats.ended("intake", "the watch folder intake runs again")
            return intake
        if not self._retry.ready("intake", now):
            return intake
        error = None if intake.cancelled() else intake.exception()
        self._retry.failed("intake", now)
        self._repeats.failed(
            "intake", "the watch folder intake stopped (%r); restarting it", error,
            level=logging.ERROR, exc_info=error,
        )  # fmt: skip
        return asyncio.create_task(self._run_intake(), name="intake")

    async def _run_intake(self) -> None:
        self._intake_started = self.monotonic()
        scanner = self.config.scanner
        self._intake = Intake(
            scanner.watch_path,
            quiescence=scanner.quiescence_period_seconds,
            force_polling=scanner.force_polling,
            poll_delay_ms=scanner.poll_delay_ms,
            ready_marker=scanner.ready_marker,
            rescan_interval=scanner.rescan_interval_seconds,
            is_known=self._is_known,
            sink=_IntakeRecorder(self.ledger),
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
        self.check_log()
        now, mono = self.clock(), self.monotonic()
        observations = await self._observe(mono)
        self.projection.catch_up()
        with self.projection.snapshot() as views:
            cases = views.cases(active_only=True)
            slots = [s for s in views.slots() if s.host in self.policy.hosts_by_name]
            hosts = views.hosts()
        world = World(
            cases=cases, slots=slots, hosts=hosts, observations=observations,
            started_at=self.started_at, mono=mono, busy=self._busy(),
            settled_at=dict(self.settled_at),
        )  # fmt: skip
        decision = reconcile(world, now, self.policy, self.memory)
        self.memory = decision.memory
        for alarm in decision.alarms:
            subject = f"case {alarm.case_id}: " if alarm.case_id else ""
            log.error("ALARM %s%s", subject, alarm.message)
        refused = self._apply(decision.records)
        for action in decision.actions:
            case_id = getattr(action, "case_id", None)
            if case_id is None or case_id not in refused:  # else its premise was not recorded
                self._start(action)
        self.progress.clocks(
            {name: seen.skew for name, seen in observations.items() if isinstance(seen, Seen)}
        )
        active = {c.case_id for c in cases}
        self._retry.retain(lambda key: _still_about(key, active))
        self._repeats.retain(lambda key: _still_about(key, active))
        self.settled_at = {
            c.case_id: at
            for c in cases
            if c.state is CaseState.SUBMITTING and (at := self.settled_at.get(c.case_id))
        }

    async def _observe(self, now: float) -> dict[str, Observation]:
        """This cycle's observation of every host: one status query per host that is due.

        The cycle waits for the queries a while; a host still silent then is not seen this
        cycle (its query goes on, and its answer serves a later cycle, which does not wait
        for it again), so one hanging node never stalls the others' monitoring, kills and
        allocations, at start-up or later.
        """
        for name, poll in self._polls.items():
            if poll.query is None and (poll.due is None or poll.due <= now):
                poll.query = asyncio.create_task(self._query(name), name=f"poll {name}")
                poll.asked_at = now
        fresh = [
            p.query
            for p in self._polls.values()
            if p.query is not None and now - p.asked_at < self._query_wait
        ]
        if fresh:
            await asyncio.wait(fresh, timeout=self._query_wait)
        seen: dict[str, Observation] = {}
        for name, poll in self._polls.items():
            if poll.query is None:
                seen[name] = poll.last  # not due: still backing off after a failure
            elif not poll.query.done():
                seen[name] = Unseen("the status query has not answered yet", Blindness.PENDING)
            else:
                poll.last = seen[name] = poll.query.result()  # _query never raises
                poll.query = None
                self._schedule(name, poll, now)
        return seen

    async def _query(self, name: str) -> Observation:
        """The host's ``observe()``; an exception from the adapter (a bug) is contained to
        this host and this poll: logged once with its traceback, treated as not seen."""
        try:
            observation = await self.hosts[name].observe()
        except Exception as exc:
            self._repeats.failed(
                ("observe", name), "host %s: the status query failed unexpectedly: %r", name,
                exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return Unseen(f"our adapter failed ({type(exc).__name__})", Blindness.FAULT)
        self._repeats.ended(("observe", name))
        return observation

    def _schedule(self, name: str, poll: _HostPoll, now: float) -> None:
        if isinstance(poll.last, Seen):
            poll.failures, poll.due = 0, None
            self._repeats.ended(("unseen", name), f"host {name} seen again")
            return
        poll.failures += 1
        delay = min(self._backoff_cap[name], self._interval * 2 ** (poll.failures - 1))
        poll.due = now + delay
        self._repeats.failed(
            ("unseen", name), "host %s: not seen (%s: %s); polled again with backoff", name,
            poll.last.kind, poll.last.reason,
        )  # fmt: skip

    # --- recording facts ---------------------------------------------------------------

    def _apply(self, records: Iterable[Record]) -> set[str]:
        """Record each fact; one the ledger refuses (the state moved meanwhile, e.g. an
        operator's command) is skipped: the next cycle looks at the new state. A record
        that fails otherwise (a full disk, a bug) is contained the same way, and logged
        once. Returns the case ids of the records not recorded."""
        refused_for: set[str] = set()
        any_applied = False
        for record in records:
            try:
                getattr(self.ledger, record.command)(**record.kwargs, actor=DAEMON)
            except (InvalidTransition, SlotError, ConcurrentUpdate, CaseNotFound) as refused:
                log.info("%s: %s not recorded: %s", _subject(record), record.command, refused)
            except Exception as exc:
                self._repeats.failed(
                    ("record", record.command), "%s: %s could not be recorded: %r",
                    _subject(record), record.command, exc, level=logging.ERROR, exc_info=exc,
                )  # fmt: skip
            else:
                any_applied = True
                self._repeats.ended(("record", record.command))
                log.info("%s: %s", _subject(record), _describe(record))
                failpoint(f"after:{record.command}")
                if record.command == "hold_case" and self._intake is not None:
                    # Watch it again: it is released once it is stable and sendable.
                    self._intake.reconsider(record.kwargs["case_id"])
                continue
            if record.case_id is not None:
                refused_for.add(record.case_id)
        if any_applied:
            self.projection.catch_up()
        return refused_for

    # --- remote actions ----------------------------------------------------------------

    def _busy(self) -> frozenset[str]:
        return frozenset(key for key in self._inflight if isinstance(key, str))

    def _start(self, action: Action) -> None:
        key = _key(action)
        ready = self._retry.ready(_retry_key(action), self.monotonic())
        if key in self._inflight or not ready:
            return
        task = asyncio.create_task(self._guarded(action), name=f"{type(action).__name__}")
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))

    async def _guarded(self, action: Action) -> None:
        """Carry out an action; whatever it raises stays with it (logged once with its
        traceback). An action that raised, ended unknown or was refused (its case held) is
        tried again only after a growing delay: nothing repeats in a storm."""
        retry_key, said_key = _retry_key(action), _said_key(action)
        try:
            setback = await self._perform(action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not kill the daemon, nor repeat every cycle
            self._retry.failed(retry_key, self.monotonic())
            self._repeats.failed(
                said_key, "%s: %s failed unexpectedly: %r; retrying with backoff",
                _who(action), type(action).__name__, exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return
        if setback is None:
            self._retry.succeeded(retry_key)
            self._repeats.ended(said_key)
            return
        self._retry.failed(retry_key, self.monotonic())
        what = "outcome unknown" if isinstance(setback, Unknown) else "refused"
        self._repeats.failed(
            said_key, "%s: %s %s (%s); trying again with backoff",
            _who(action), type(action).__name__, what, setback.reason,
        )  # fmt: skip

    async def _perform(self, action: Action) -> Unknown | Refused | None:
        """Do it; returns the setback that stopped it (unknown, or refused), if one did."""
        host = self.hosts[action.host]
        match action:
            case Submit():
                return await self._submit(action, host)
            case Cancel(task=task):
                outcome = await host.cancel(task)
                log.info("%s: cancel of task %d sent: %s", _who(action), task.id,
                         type(outcome).__name__)  # fmt: skip
            case Release(slot=slot):
                outcome = await host.release(slot)
                self._apply(after_release(action, outcome))
            case FailWithLog(task=task):
                outcome = await host.log_tail(task)
                self._apply(after_log(action, outcome))
                return None  # the case failed whatever became of reading its log
            case Fetch():
                outcome = await self._fetch(action, host)
        return outcome if isinstance(outcome, Unknown) else None

    async def _submit(self, action: Submit, host: RemoteHost) -> Unknown | Refused | None:
        base = self.policy.hosts_by_name[action.host].remote_base_dir
        started = Record.of(
            "start_submission", case_id=action.case_id, host=action.host, slot=action.slot,
            remote_base_dir=base,
        )  # fmt: skip
        if self._apply([started]):
            return None  # refused: e.g. the slot went to another process first
        case = self.projection.case(action.case_id)
        assert case is not None and case.remote_dir is not None and case.label is not None
        try:
            local = self.config.scanner.watch_path / case.case_id
            changed = await asyncio.to_thread(self._content_changed, case, local)
            if changed is not None:
                self._apply([Record.of("hold_case", case_id=case.case_id, reason=changed)])
                return None
            async with self._transfers[action.host]:
                try:
                    uploaded = await host.upload(
                        local, case.remote_dir,
                        still_registered=lambda: self._content_changed(case, local),
                        progress=self._progress(case.case_id, "upload"),
                    )  # fmt: skip
                finally:
                    self.progress.finish(case.case_id)
            not_recorded = self._apply(after_upload(case, uploaded, self.clock(), self.policy))
            if not isinstance(uploaded, Uploaded):
                return uploaded if isinstance(uploaded, Unknown | Refused) else None
            if case.case_id in not_recorded:
                return None  # what was sent is not on record: nothing is queued on it
            added = await host.submit(
                slot=action.slot, label=case.label, remote_dir=case.remote_dir,
                case_id=case.case_id, attempt=case.attempt,
            )  # fmt: skip
            failpoint("after_submit")
            self._apply(after_submit(case, added, self.clock(), self.policy))
            return added if isinstance(added, Unknown) else None
        finally:
            # Until then a `pueue add` may still land: "not in the queue" does not count.
            self.settled_at[action.case_id] = (
                self.monotonic() + self.policy.submit_settle.total_seconds()
            )

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

    async def _fetch(self, action: Fetch, host: RemoteHost) -> object:
        case = self.projection.case(action.case_id)
        if case is None or case.state is not CaseState.RETRIEVING:
            return None
        local = self.config.results.local_path / case.case_id / f"attempt-{case.attempt}"
        async with self._transfers[action.host]:
            try:
                fetched = await host.fetch(
                    action.remote_dir, local, progress=self._progress(case.case_id, "download")
                )
            finally:
                self.progress.finish(case.case_id)
        failpoint("after_download")
        self._apply(after_fetch(case, fetched))
        return fetched

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

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def case_ready(self, arrival: Arrival) -> None:
        try:
            case = self._ledger.case(arrival.case_id)
        except CaseNotFound:
            self._register(
                arrival.case_id, arrival.file_count, arrival.total_bytes, arrival.digest, None
            )
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

    def case_held(self, name: str, reason: str, found: Fingerprint) -> None:
        try:
            case = self._ledger.case(name)
        except CaseNotFound:
            self._register(name, found.file_count, found.total_bytes, found.digest, reason)
        else:
            if case.state is not CaseState.WAITING:
                return
            self._ledger.hold_case(name, actor=DAEMON, reason=reason)

    def _register(
        self, name: str, files: int, size: int, digest: str, hold_reason: str | None
    ) -> None:
        """A new case, unless its name clashes with a registered one's: then refused."""
        try:
            self._ledger.detect_case(
                name, file_count=files, total_bytes=size, fingerprint=digest, actor=DAEMON,
                hold_reason=hold_reason,
            )  # fmt: skip
        except NameClash as clash:
            self._ledger.refuse_entry(name, reason=str(clash), actor=DAEMON)
            log.warning("refused case directory '%s': %s", name, clash)


def _key(action: Action) -> object:
    match action:
        case Release(host=host, slot=slot):
            return ("release", host, slot)
        case Cancel(host=host, task=task, case_id=None):
            return ("cancel", host, task.id)
        case _:
            return action.case_id  # one action per case at a time


def _retry_key(action: Action) -> tuple[object, ...]:
    """Each kind of action backs off on its own: a kill never waits out a submit's delay."""
    case_id = getattr(action, "case_id", None)
    if case_id is not None:
        return ("case", type(action).__name__, case_id)
    return (type(action).__name__, _key(action))


def _said_key(action: Action) -> tuple[object, ...]:
    case_id = getattr(action, "case_id", None)
    return ("case", case_id) if case_id is not None else ("action", _key(action))


def _still_about(key: object, active: set[str]) -> bool:
    """Whether a retry or repeat key still has a subject: a case's keys end with it."""
    return not (isinstance(key, tuple) and key[:1] == ("case",) and key[-1] not in active)


def _who(action: Action) -> str:
    case_id = getattr(action, "case_id", None)
    return f"case {case_id}" if case_id else f"host {action.host}"


def _subject(record: Record) -> str:
    args = record.kwargs
    if "case_id" in args:
        return f"case {args['case_id']}"
    if "slot" in args:
        return f"gpu {args['host']}/{args['slot']}"
    return f"host {args.get('name', '?')}"


def _describe(record: Record) -> str:
    shown = {k: v for k, v in record.kwargs.items() if k not in ("case_id", "log_tail")}
    return f"{record.command} " + " ".join(f"{k}={_short(v)}" for k, v in shown.items())


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."
