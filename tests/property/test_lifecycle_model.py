"""Model-based test of the lifecycle: the decision core, the message bus, remote dispatch,
the ledger and the views (the daemon's own parts, only the node is simulated) driven
against a node that misbehaves in every way we know of.

The node loses replies, is unreachable or prints garbage, restarts (killing what runs and
pausing groups), reuses ids after ``clean``, and runs tasks that succeed, fail or get killed.
Our wall clock and the node's clock jump both ways, and the node's clock is off ours. The
daemon crashes between any two steps (its memory and actions in flight are lost). After
every step, the invariants a clinic relies on must hold (no case killed for its timeout
before it really ran that long); at the end, with the node behaving, every case must reach
an end.
"""

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.adapters.local.progress import ProgressBoard
from mqi_es.app.bus import REFUSALS, MessageBus
from mqi_es.app.dispatch import Dispatcher
from mqi_es.app.ledger import Ledger
from mqi_es.core.actions import Memory
from mqi_es.core.commands import (
    CancelCase,
    DetectCase,
    RegisterHost,
    RegisterSlot,
    RequestKill,
    RetryCase,
    case_of,
)
from mqi_es.core.cycle import World
from mqi_es.core.outcome import Ok, RemoteFailure, Unknown
from mqi_es.core.policy import HostPolicy, Policy
from mqi_es.core.reactions import Fetched, NothingToFetch, Uploaded
from mqi_es.core.reconcile import reconcile
from mqi_es.core.remote import (
    Blindness,
    LogTails,
    RemoteSlot,
    RemoteTask,
    Seen,
    StatusSnapshot,
    Unseen,
)
from mqi_es.core.states import AlarmKind, CaseState, FailureCategory, KillCause, SlotState
from mqi_es.domain.recorded import Recorded
from projections.feed import EventFeed
from projections.live import LiveViews

GROUPS = ("gpu0", "gpu1")
EPOCH = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = Policy(
    hosts=(HostPolicy("n1", GROUPS, "~/mqi"),),
    timeout=timedelta(minutes=30),
    max_attempts=3,
    missing_grace=2,
    retry_backoff=timedelta(seconds=20),
    kill_confirm_timeout=timedelta(minutes=5),
    submit_settle=timedelta(seconds=40),
)


@dataclass
class _Task:
    id: int
    label: str
    group: str
    created_at: datetime
    state: str = "waiting"
    result: str | None = None
    exit_code: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    started_true: float | None = None  # when it really started (the true, monotonic time)


class FakeNode:
    """A host's queue as far as the lifecycle depends on it, in the core's terms (pueue's
    behaviour, field-notes section 3): ids reused after clean, a restart kills what runs and
    pauses the slots that still hold waiting tasks (they are then held)."""

    def __init__(self) -> None:
        self.tasks: dict[int, _Task] = {}
        self.paused: set[str] = set()
        self.labels_added: list[str] = []  # every task ever added, for the invariant

    def add(self, label: str, group: str, now: datetime) -> int:
        task_id = max(self.tasks, default=-1) + 1  # ids are reused after clean
        self.tasks[task_id] = _Task(task_id, label, group, now)
        self.labels_added.append(label)
        return task_id

    def snapshot(self) -> StatusSnapshot:
        tasks = {
            t.id: RemoteTask(
                id=t.id, label=t.label, slot=t.group,
                state="held" if t.state == "waiting" and t.group in self.paused else t.state,
                result=t.result, exit_code=t.exit_code, created_at=t.created_at, start=t.start,
                end=t.end, detail="spawn error" if t.result == "failed_to_start" else None,
            )
            for t in self.tasks.values()
        }  # fmt: skip
        slots = {g: RemoteSlot(open=g not in self.paused) for g in GROUPS}
        return StatusSnapshot(tasks, slots)

    def step(self, now: datetime, result: str, true_time: float) -> None:
        """Start what may start, and end the oldest running task with ``result``."""
        running = [t for t in self.tasks.values() if t.state == "running"]
        if running:
            done = min(running, key=lambda t: t.id)
            done.state, done.result, done.end = "ended", result, now
            done.exit_code = 2 if result == "failed" else None
        for group in GROUPS:
            if group in self.paused:
                continue
            if any(t.state == "running" and t.group == group for t in self.tasks.values()):
                continue
            queued = [t for t in self.tasks.values() if t.state == "waiting" and t.group == group]
            if queued:
                first = min(queued, key=lambda t: t.id)
                first.state, first.start, first.started_true = "running", now, true_time

    def kill(self, task_id: int, now: datetime) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            return
        if task.state == "running":
            task.state, task.result, task.end = "ended", "killed", now
        elif task.state == "waiting":
            del self.tasks[task_id]

    def restart(self, now: datetime) -> None:
        for task in self.tasks.values():
            if task.state == "running":
                task.state, task.result, task.end = "ended", "killed", now
        self.paused |= {t.group for t in self.tasks.values() if t.state == "waiting"}

    def clean(self) -> None:
        self.tasks = {i: t for i, t in self.tasks.items() if t.state != "ended"}


class ModelHost:
    """The node behind the daemon's remote port (``RemoteHost``): each call's outcome is
    the ``luck`` of the step that performs it."""

    name = "n1"

    def __init__(self, model: "Lifecycle") -> None:
        self.model = model
        self.luck = "ok"

    async def upload(self, local_dir, remote_dir, *, still_registered=None, progress=None):
        return {"failure": RemoteFailure(1, "disk full"), "unknown": Unknown("cut")}.get(
            self.luck, Uploaded(1, 10, 0.1)
        )

    async def submit(self, *, slot, label, remote_dir, case_id, attempt, timeout_hours=None):
        if self.luck not in ("ok", "lost"):
            return Unknown("timed out")
        task_id = self.model.node.add(label, slot, self.model.node_now())
        return Ok(str(task_id)) if self.luck == "ok" else Unknown("connection lost")

    async def cancel(self, task):
        if self.luck in ("ok", "lost"):
            self.model.node.kill(task.id, self.model.node_now())
        return Ok("") if self.luck == "ok" else Unknown("connection lost")

    async def release(self, slot):
        if self.luck in ("ok", "lost"):
            self.model.node.paused.discard(slot)
        return Ok("") if self.luck == "ok" else Unknown("x")

    async def free_space(self):
        return 10**12 if self.luck == "ok" else Unknown("timed out")

    async def log_tails(self, tasks, *, lines):
        if self.luck != "ok":
            return Unknown("timed out")
        return LogTails({task.id: "error: dose grid" for task in tasks})

    async def fetch(self, remote_dir, local_dir, *, progress=None):
        return {
            "ok": Fetched(2, 100, "/results"), "unknown": Unknown("cut"),
            "failure": NothingToFetch(("*.dcm",)), "lost": Unknown("cut"),
        }[self.luck]  # fmt: skip

    async def close(self) -> None:
        return None


class UnchangedFolders:
    """Case folders that stay as they were registered."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, case_id: str) -> Path:
        return self.root / case_id

    def changed(self, case_id: str, registered: str) -> str | None:
        return None


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.true = 1_000.0  # the true time, which our monotonic clock follows
        self.wall_offset = timedelta()  # our wall clock minus the true time: jumps
        self.node_offset = timedelta()  # the node's clock minus the true time: skew, jumps
        self.jumping: str | None = None  # whose clock jumps in this example
        Recorded.Event.create_timestamp = classmethod(lambda cls: self.now)  # type: ignore[method-assign]
        self.root = tempfile.TemporaryDirectory()
        root = Path(self.root.name)
        self.loop = asyncio.new_event_loop()
        self.ledger = Ledger(sqlite_event_store_env(root / "events.sqlite"))
        self.views = LiveViews(self.ledger, root / "views.sqlite")
        self.host = ModelHost(self)
        self.node = FakeNode()
        self._start_daemon()
        self.bus.handle([RegisterHost(name="n1", address="127.0.0.1")])
        self.bus.handle([RegisterSlot(host="n1", slot=group) for group in GROUPS])
        self.operator_bus = MessageBus(self.ledger, actor="user:op")
        self.feed = EventFeed(self.ledger)
        self.cases = 0
        self.log: list[tuple[int, str]] = []

    def _start_daemon(self) -> None:
        """The daemon's process: its bus and dispatcher, with nothing pending yet."""
        self.bus = MessageBus(self.ledger, actor="daemon", views=self.views)
        self.dispatcher = Dispatcher(
            self.bus, {"n1": self.host}, self.views, POLICY,
            folders=UnchangedFolders(Path(self.root.name) / "incoming"),
            results_dir=Path(self.root.name) / "results",
            progress=ProgressBoard(Path(self.root.name) / "live.json"),
            clock=lambda: self.now, monotonic=lambda: self.true,
        )  # fmt: skip
        self.pending: list = []
        self.memory = Memory()
        self.started_at = self.true

    @property
    def now(self) -> datetime:
        """Our wall clock."""
        return EPOCH + timedelta(seconds=self.true) + self.wall_offset

    def node_now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.true) + self.node_offset

    def teardown(self) -> None:
        try:
            self._run_to_the_end()
        finally:
            self.views.close()
            self.feed.close()
            self.ledger.close()
            self.loop.close()
            self.root.cleanup()
            del Recorded.Event.create_timestamp

    # --- the daemon's side -------------------------------------------------------------

    def _check_ran_its_timeout(self, case_id: str) -> None:
        """However the clocks jumped, a timeout kill comes after the timeout, truly."""
        case = self._case(case_id)
        task = next(t for t in self.node.tasks.values() if t.label == case.label)
        assert task.started_true is not None
        assert self.true - task.started_true >= POLICY.timeout.total_seconds(), (task, self.true)

    def _world(self, observation) -> World:
        self.views.catch_up()
        with self.views.snapshot() as views:
            return World(
                cases=views.cases(active_only=True), slots=views.slots(), hosts=views.hosts(),
                observations={"n1": observation}, started_at=self.started_at, mono=self.true,
                busy=frozenset(a.case_id for a in self.pending if getattr(a, "case_id", None)),
                settled_at=dict(self.dispatcher.settled_at),
                alarms=views.alarms(standing_only=True),
            )  # fmt: skip

    @rule(view=st.sampled_from(["seen", "seen", "seen", "unreachable", "garbage"]))
    def cycle(self, view: str) -> None:
        if view == "seen":
            skew = (self.node_offset - self.wall_offset).total_seconds()
            observation = Seen(self.node.snapshot(), self.true, self.node_now(), skew, 0.0)
        elif view == "unreachable":
            observation = Unseen("connection refused", Blindness.UNREACHABLE)
        else:
            observation = Unseen("bad JSON", Blindness.UNREADABLE)
        decision = reconcile(self._world(observation), self.now, POLICY, self.memory)
        if isinstance(observation, Unseen):  # an unknown check never changes a case
            assert all(case_of(r) is None for r in decision.records), decision.records
            assert decision.actions == ()
        self.memory = decision.memory
        for record in decision.records:
            if isinstance(record, RequestKill) and record.cause is KillCause.TIMEOUT:
                self._check_ran_its_timeout(record.case_id)
        for action in self.bus.decide(decision):
            if action not in self.pending:
                self.pending.append(action)

    @precondition(lambda self: self.pending)
    @rule(
        index=st.integers(0, 10), luck=st.sampled_from(["ok", "ok", "unknown", "failure", "lost"])
    )
    def perform(self, index: int, luck: str) -> None:
        action = self.pending.pop(index % len(self.pending))
        self.host.luck = luck
        self.loop.run_until_complete(self.dispatcher.perform(action))

    def _case(self, case_id: str):
        self.views.catch_up()
        return self.views.case(case_id)

    # --- the world's side --------------------------------------------------------------

    @precondition(lambda self: self.cases < 5)
    @rule()
    def new_case(self) -> None:
        self.bus.execute(
            DetectCase(case_id=f"c{self.cases}", file_count=1, total_bytes=1, fingerprint="f")
        )
        self.cases += 1

    @rule(result=st.sampled_from(["succeeded", "succeeded", "failed", "failed_to_start", "killed"]))
    def node_works(self, result: str) -> None:
        self.node.step(self.node_now(), result, self.true)

    @rule()
    def node_restarts(self) -> None:
        self.node.restart(self.node_now())

    @rule()
    def node_cleans(self) -> None:
        self.node.clean()

    @rule(seconds=st.sampled_from([1, 10, 30, 60, 600, 3600]))
    def time_passes(self, seconds: int) -> None:
        self.true += seconds

    @rule(hours=st.sampled_from([-48, -2, 2, 48]), whose=st.sampled_from(["ours", "node's"]))
    def a_clock_jumps(self, hours: int, whose: str) -> None:
        """One of the two clocks jumps (both jumping ahead across a restart is the one
        double fault the core cannot see through: it would kill early)."""
        if self.jumping not in (None, whose):
            return
        self.jumping = whose
        if whose == "ours":
            self.wall_offset += timedelta(hours=hours)
        else:
            self.node_offset += timedelta(hours=hours)

    @rule()
    def daemon_crashes(self) -> None:
        self._start_daemon()

    @precondition(lambda self: self.cases > 0)
    @rule(which=st.integers(0, 4), command=st.sampled_from([CancelCase, RetryCase]))
    def operator(self, which: int, command: type[CancelCase | RetryCase]) -> None:
        with contextlib.suppress(*REFUSALS):
            self.operator_bus.execute(command(case_id=f"c{which % self.cases}", reason="op"))

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def a_gpu_is_never_held_by_two_cases_and_no_ended_case_holds_one(self) -> None:
        self.views.catch_up()
        with self.views.snapshot() as views:
            cases = {c.case_id: c for c in views.cases()}
            slots = views.slots()
        holders = [s.case_id for s in slots if s.state is SlotState.ALLOCATED]
        assert len(holders) == len(set(holders))
        for s in slots:
            if s.state is SlotState.ALLOCATED:
                holder = cases[s.case_id]
                assert holder.state.holds_slot and holder.attempt == s.attempt, (s, holder)
            if s.state is SlotState.QUARANTINED:
                assert s.reason, s
        for c in cases.values():
            if c.state.holds_slot:
                assert any(s.case_id == c.case_id and s.name == c.slot for s in slots), c
            if c.state.is_terminal:
                assert c.host is None and c.task_id is None

    @invariant()
    def a_condition_stands_once_and_every_failure_raised_an_alarm(self) -> None:
        self.views.catch_up()
        with self.views.snapshot() as views:
            standing = [a.key for a in views.alarms(standing_only=True)]
            failed = {
                c.case_id for c in views.cases(CaseState.FAILED)
                if c.failure is not FailureCategory.CANCELLED
            }  # fmt: skip
            alarmed = {a.case_id for a in views.alarms() if a.kind is AlarmKind.CASE_FAILED}
        assert len(standing) == len(set(standing)), standing
        assert failed <= alarmed, failed - alarmed

    @invariant()
    def at_most_one_remote_task_per_attempt(self) -> None:
        labels = self.node.labels_added
        assert len(labels) == len(set(labels)), labels

    @invariant()
    def a_case_never_has_two_live_tasks(self) -> None:
        live = [t.label.rsplit(":", 1)[0] for t in self.node.tasks.values() if t.state != "ended"]
        assert len(live) == len(set(live)), live

    @invariant()
    def the_log_only_grows(self) -> None:
        current = [(n, cls.__qualname__) for n, _, cls, _ in self.feed.states(0, 100_000)]
        assert current[: len(self.log)] == self.log
        self.log = current

    # --- the end -------------------------------------------------------------------------

    def _run_to_the_end(self) -> None:
        """With the node behaving from now on, every case reaches an end."""
        for _ in range(80):
            self.true += 120
            self.node.paused.clear()
            self.node.step(self.node_now(), "succeeded", self.true)
            self.cycle("seen")
            while self.pending:
                self.perform(0, "ok")
            with self.views.snapshot() as views:
                if all(c.state.is_terminal for c in views.cases()):
                    break
        with self.views.snapshot() as views:
            unfinished = [c for c in views.cases() if not c.state.is_terminal]
            slots = views.slots()
        assert not unfinished, unfinished
        assert all(s.state in (SlotState.FREE, SlotState.QUARANTINED) for s in slots), slots


def new_lifecycle() -> Lifecycle:
    return Lifecycle()


def test_lifecycle_model() -> None:
    # Through a factory function, not ``Lifecycle.TestCase``: hypothesis digests what it
    # is given with ``inspect.getsource``, which for a class parses the whole module with
    # ``ast``, and CPython 3.11.7's AST conversion is not safe beside another thread's
    # ("AST constructor recursion depth mismatch", fixed in 3.11.8). A function's source
    # is found without ``ast``.
    run_state_machine_as_test(
        new_lifecycle, settings=settings(max_examples=60, stateful_step_count=40, deadline=None)
    )
