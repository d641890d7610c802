"""The tick: a thin asyncio shell around the decision core.

Each cycle: poll every host that is due (one status query per host, whatever the number
of cases), bring the views up to date, ask ``reconcile`` what to do, record its facts
through the bus and start its remote actions in the background with bounded concurrency.
A slow upload never holds up the next cycle; a case with an action in flight is left
alone until it ends. Every fault is contained where it happens: in one host's query, one
action, one record, one cycle. Nothing here decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.local.progress import ProgressBoard
from mqi_es.adapters.local.repeats import Repeats
from mqi_es.adapters.local.systemd import Systemd
from mqi_es.app import action_keys
from mqi_es.app.bus import MessageBus
from mqi_es.app.dispatch import Dispatcher, who
from mqi_es.app.notifier import Notifier
from mqi_es.app.ports import Intake
from mqi_es.core import backoff
from mqi_es.core.actions import Action, Memory
from mqi_es.core.backoff import Backoff
from mqi_es.core.commands import ClaimNames, Command
from mqi_es.core.cycle import World
from mqi_es.core.errors import Fenced, LogRefused
from mqi_es.core.housekeeping import finished_tasks
from mqi_es.core.ids import name_key
from mqi_es.core.outcome import Unknown
from mqi_es.core.policy import Policy
from mqi_es.core.reactions import Unwritable
from mqi_es.core.reconcile import reconcile
from mqi_es.core.remote import NOT_POLLED, Blindness, Observation, Seen, Unseen
from mqi_es.core.states import CaseState
from mqi_es.core.views import CaseView

SHUTDOWN_GRACE_SECONDS = 10.0
QUERY_WAIT_SECONDS = 5.0  # how long a cycle waits at least for the hosts' status queries
RETRY_CAP_SECONDS = 300.0  # the longest wait before retrying an action, a cycle, the intake
INTAKE_SETTLED_SECONDS = 60.0  # an intake up this long has recovered: its failures are forgotten

log = logging.getLogger("mqi.daemon")


@dataclass(frozen=True, slots=True)
class Pace:
    """How often the daemon looks: a cycle every ``interval`` seconds; a host not seen is
    polled again with backoff up to its ``reconnect_cap``; a cycle waits at least
    ``query_wait`` seconds for the status queries."""

    interval: float
    reconnect_cap: Mapping[str, float]
    query_wait: float = QUERY_WAIT_SECONDS
    disk_check: float = 600.0  # seconds between two readings of a node's free space


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
    disk_read_at: float | None = None  # when its free space was last read


class Daemon:
    """Runs the lifecycle for every host of ``dispatcher`` until ``stop`` is set.

    ``configuration`` registers the configured hosts and slots at start; ``intake`` makes
    the watch folder's intake (made again if it fails). ``clock`` (UTC wall time) dates
    the facts; ``monotonic`` measures every local wait, so a jump of the wall clock cannot
    stop polling or hasten a retry. ``check_log`` is asked every cycle whether the log
    file is still the one being written: if not, the daemon stops (``LogRefused``) rather
    than record facts nobody will read. ``systemd`` hears after each healthy cycle that the
    daemon is alive (its watchdog restarts a daemon whose loop is stuck).
    """

    def __init__(
        self,
        bus: MessageBus,
        dispatcher: Dispatcher,
        *,
        policy: Policy,
        pace: Pace,
        configuration: Sequence[Command],
        intake: Callable[[], Intake],
        progress: ProgressBoard,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        check_log: Callable[[], None] = lambda: None,
        systemd: Systemd | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.bus = bus
        self.dispatcher = dispatcher
        self.hosts = dispatcher.hosts
        self.views = dispatcher.views
        self.policy = policy
        self.pace = pace
        self.configuration = configuration
        self.progress = progress
        self.clock = clock
        self.monotonic = monotonic
        self.check_log = check_log  # raises LogRefused once the log is not ours any more
        self.systemd = systemd or Systemd({})
        self.notifier = notifier
        self.memory = Memory()
        self.started_at = monotonic()
        self._make_intake = intake
        self._intake: Intake | None = None
        self._intake_started = 0.0
        bus.on_held = self._watch_again
        self._polls = {name: _HostPoll() for name in self.hosts}
        self._inflight: dict[object, asyncio.Task[None]] = {}
        self._query_wait = max(pace.interval, pace.query_wait)
        self._retry = Backoff(base=pace.interval, cap=max(pace.interval, RETRY_CAP_SECONDS))
        self._repeats = Repeats(log)
        self._active: set[str] = set()  # the cases active at the last cycle
        self._fenced: Fenced | None = None  # another daemon leads now: stop at once

    # --- lifecycle of the process ------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, grace: Callable[[], float] = lambda: SHUTDOWN_GRACE_SECONDS
    ) -> None:
        """Run until ``stop``; actions still in flight then get ``grace()`` seconds to end
        (none when leadership was lost: another daemon may be acting on the same cases)."""
        self.bus.ledger.start_log()
        self.register_configuration()
        self.views.catch_up()
        self._claim_names()
        intake = asyncio.create_task(self._run_intake(), name="intake")
        notifying = asyncio.create_task(self._run_notifier(), name="notifier")
        log.info("daemon started: %d host(s)", len(self.hosts))
        try:
            while not stop.is_set() and self._fenced is None:
                intake = self._keep_alive(intake)
                wait = self.pace.interval
                try:
                    await self.cycle()
                except LogRefused as exc:
                    log.critical("%s", exc)
                    raise
                except Fenced as exc:
                    self._fenced = exc
                    break
                except Exception as exc:  # e.g. the disk is full: say so once, back off
                    wait = self._retry.failed("cycle", self.monotonic())
                    self._repeats.failed(
                        "cycle", "a cycle failed: %r; retrying with backoff", exc,
                        level=logging.ERROR, exc_info=exc,
                    )  # fmt: skip
                else:
                    self._retry.succeeded("cycle")
                    self._repeats.ended("cycle", "cycles run again")
                    self._alive()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            if self._fenced is not None:
                log.error("%s: the daemon stops acting", self._fenced)
            intake.cancel()
            await self._drain(0.0 if self._fenced is not None else grace())
            queries = [p.query for p in self._polls.values() if p.query is not None]
            for task in [intake, notifying, *queries]:
                task.cancel()
            await asyncio.gather(intake, notifying, *queries, return_exceptions=True)
            for host in self.hosts.values():
                await host.close()
            self.views.close()
            log.info("daemon stopped")

    async def _run_notifier(self) -> None:
        """Deliver notifications in the background; a fault there never stops the cycle
        (the notifier contains its own, this is the last guard)."""
        if self.notifier is None:
            return
        while True:
            try:
                await self.notifier.run()
                return
            except Exception as exc:
                self._repeats.failed("notifier", "the notifier stopped (%r); restarting it",
                                     exc, level=logging.ERROR, exc_info=exc)  # fmt: skip
                await asyncio.sleep(RETRY_CAP_SECONDS / 10)

    def _alive(self) -> None:
        """A healthy cycle: `mqi status` and systemd's watchdog hear of it."""
        at = self.clock()
        self.progress.cycled(at)
        self.systemd.cycle_completed(
            f"{len(self._active)} active case(s); last cycle completed {at:%Y-%m-%d %H:%M:%S} UTC"
        )

    def register_configuration(self) -> None:
        """The configured hosts and slots, registered once (a known one is left alone)."""
        for command in self.configuration:
            self.bus.execute(command)

    def _claim_names(self) -> None:
        """Cases registered before their names were claimed (an earlier release, or
        another ``folds_case``) claim them now, so no later folder can clash with them."""
        with self.views.snapshot() as views:
            claims = views.name_claims()
        fold = self.bus.ledger.fold_case
        held = {(case_id, key) for case_id, key in claims}
        unclaimed = sorted({c for c, _ in claims if (c, name_key(c, fold_case=fold)) not in held})
        if not unclaimed:
            return
        self.bus.execute(ClaimNames(case_ids=unclaimed))
        log.info("claimed the names of %d earlier case(s)", len(unclaimed))
        self.views.catch_up()

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
        self._intake = self._make_intake()
        await self._intake.run()

    def _watch_again(self, case_id: str) -> None:
        """A case put on hold: the intake releases it once it is stable and sendable."""
        if self._intake is not None:
            self._intake.reconsider(case_id)

    async def _drain(self, grace: float) -> None:
        """Let actions in flight finish for a moment, then cancel them: whatever was cut
        short is recovered by the lifecycle rules at the next start."""
        pending = list(self._inflight.values())
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace) if grace > 0 else (set(), pending)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    # --- one cycle ---------------------------------------------------------------------

    async def cycle(self) -> None:
        self.check_log()
        now, mono = self.clock(), self.monotonic()
        try:
            await self._cycle(now, mono)
        finally:
            self.progress.metrics.cycle(self.monotonic() - mono)

    async def _cycle(self, now: datetime, mono: float) -> None:
        observations = await self._observe(mono)
        self.views.catch_up()
        with self.views.snapshot() as views:
            cases = views.cases(active_only=True)
            slots = [s for s in views.slots() if s.host in self.policy.hosts_by_name]
            hosts = views.hosts()
            alarms = views.alarms(standing_only=True)
            leftovers = views.leftovers(now - self.policy.housekeeping.shortest)
            registered = views.registered(_named_by_ended_tasks(observations, cases))
        world = World(
            cases=cases, slots=slots, hosts=hosts, observations=observations,
            started_at=self.started_at, mono=mono, busy=self._busy(),
            settled_at=dict(self.dispatcher.settled_at), alarms=alarms,
            unwritable=dict(self.dispatcher.unwritable), leftovers=leftovers,
            registered=registered, disk_free=dict(self.dispatcher.disk_free),
        )  # fmt: skip
        self._read_disks(observations, mono)
        decision = reconcile(world, now, self.policy, self.memory)
        self.memory = decision.memory
        for action in self.bus.decide(decision):
            self._start(action)
        if self.notifier is not None:
            self.notifier.wake()
        self.progress.clocks(
            {name: seen.skew for name, seen in observations.items() if isinstance(seen, Seen)}
        )
        active = self._active = {c.case_id for c in cases}
        self._retry.retain(lambda key: action_keys.still_about(key, active))
        self._repeats.retain(lambda key: action_keys.still_about(key, active))
        self.dispatcher.keep_settling(c.case_id for c in cases if c.state is CaseState.SUBMITTING)
        self.progress.keep_runs(c.case_id for c in cases if c.state is CaseState.RUNNING)
        self.dispatcher.unwritable = {
            c: why for c, why in self.dispatcher.unwritable.items() if c in active
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

    def _read_disks(self, observations: Mapping[str, Observation], now: float) -> None:
        """Every ``disk_check`` seconds, read how much room each host seen has left (in the
        background: the next cycles see it)."""
        for name, seen in observations.items():
            poll = self._polls[name]
            due = poll.disk_read_at is None or now - poll.disk_read_at >= self.pace.disk_check
            if isinstance(seen, Seen) and due and ("disk", name) not in self._inflight:
                poll.disk_read_at = now
                task = asyncio.create_task(self._disk(name), name=f"disk {name}")
                self._inflight[("disk", name)] = task
                task.add_done_callback(lambda _, key=("disk", name): self._inflight.pop(key, None))

    async def _disk(self, name: str) -> None:
        try:
            await self.dispatcher.measure_disk(name)
        except Exception as exc:  # an adapter's bug: this reading only
            self._repeats.failed(("disk", name), "host %s: reading its free space failed: %r",
                                 name, exc, level=logging.ERROR, exc_info=exc)  # fmt: skip

    async def _query(self, name: str) -> Observation:
        """The host's ``observe()``; an exception from the adapter (a bug) is contained to
        this host and this poll: logged once with its traceback, treated as not seen."""
        asked = self.monotonic()
        try:
            observation = await self.hosts[name].observe()
        except Exception as exc:
            self._repeats.failed(
                ("observe", name), "host %s: the status query failed unexpectedly: %r", name,
                exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return Unseen(f"our adapter failed ({type(exc).__name__})", Blindness.FAULT)
        self._repeats.ended(("observe", name))
        unseen = observation.kind.value if isinstance(observation, Unseen) else None
        self.progress.metrics.poll(name, self.monotonic() - asked, unseen)
        return observation

    def _schedule(self, name: str, poll: _HostPoll, now: float) -> None:
        if isinstance(poll.last, Seen):
            poll.failures, poll.due = 0, None
            self._repeats.ended(("unseen", name), f"host {name} seen again")
            return
        poll.failures += 1
        cap = self.pace.reconnect_cap.get(name, RETRY_CAP_SECONDS)
        poll.due = now + backoff.delay(poll.failures, base=self.pace.interval, cap=cap)
        self._repeats.failed(
            ("unseen", name), "host %s: not seen (%s: %s); polled again with backoff", name,
            poll.last.kind, poll.last.reason,
        )  # fmt: skip

    # --- remote actions ----------------------------------------------------------------

    def _busy(self) -> frozenset[str]:
        return frozenset(key for key in self._inflight if isinstance(key, str))

    def _start(self, action: Action) -> None:
        key = action_keys.key(action)
        ready = self._retry.ready(action_keys.retry_key(action), self.monotonic())
        if key in self._inflight or not ready:
            return
        task = asyncio.create_task(self._guarded(action), name=f"{type(action).__name__}")
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))

    async def _guarded(self, action: Action) -> None:
        """Carry out an action; whatever it raises stays with it (logged once with its
        traceback). An action that raised, ended unknown or was refused (its case held) is
        tried again only after a growing delay: nothing repeats in a storm."""
        retry_key, said_key = action_keys.retry_key(action), action_keys.said_key(action)
        try:
            setback = await self.dispatcher.perform(action)
        except asyncio.CancelledError:
            raise
        except Fenced as exc:
            self._fenced = exc  # the loop ends at its next turn
            return
        except Exception as exc:  # a bug must not kill the daemon, nor repeat every cycle
            self._retry.failed(retry_key, self.monotonic())
            self._repeats.failed(
                said_key, "%s: %s failed unexpectedly: %r; retrying with backoff",
                who(action), type(action).__name__, exc, level=logging.ERROR, exc_info=exc,
            )  # fmt: skip
            return
        if setback is None:
            self._retry.succeeded(retry_key)
            self._repeats.ended(said_key)
            return
        self._retry.failed(retry_key, self.monotonic())
        what = _SETBACK_WORDS.get(type(setback), "refused")
        self._repeats.failed(
            said_key, "%s: %s %s (%s); trying again with backoff",
            who(action), type(action).__name__, what, setback.reason,
        )  # fmt: skip


_SETBACK_WORDS = {Unknown: "outcome unknown", Unwritable: "not finished"}


def _named_by_ended_tasks(
    observations: Mapping[str, Observation], cases: Sequence[CaseView]
) -> set[str]:
    """The case ids our ended tasks' labels name, live attempts' left out: housekeeping
    may remove those tasks once the views say the cases are ours."""
    live = {c.label for c in cases if c.label is not None}
    return {
        case_id
        for seen in observations.values()
        if isinstance(seen, Seen)
        for _, case_id in finished_tasks(seen.snapshot, live)
    }
