"""For random valid command sequences, the views built incrementally equal the views
rebuilt by replay, and both agree with the aggregates themselves."""

import contextlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.errors import CaseNotFound, InvalidTransition, SlotError
from mqi_es.core.states import FailureCategory, HostState, KillCause
from projections import runner
from projections.feed import EventFeed
from projections.reader import ViewReader

T0 = datetime(2026, 11, 28, tzinfo=UTC)
CASES = ["c0", "c1", "c2", "c3"]
SLOTS = [("n1", "gpu0"), ("n1", "gpu1"), ("n2", "gpu0")]


def _commands(ledger: Ledger):
    """Every command of the ledger, as (name, function of drawn arguments)."""

    def case_attempt(c):
        return ledger.case(c).attempt

    return {
        "detect": lambda c, s, i: ledger.detect_case(
            c, file_count=i, total_bytes=i * 10, fingerprint=f"f{i}", actor="daemon"),
        "hold": lambda c, s, i: ledger.hold_case(c, actor="daemon", reason="link outside"),
        "restabilize": lambda c, s, i: ledger.restabilize_case(
            c, file_count=i, total_bytes=i, fingerprint=f"g{i}", actor="daemon", reason="ok"),
        "submit": lambda c, s, i: ledger.start_submission(
            c, host=s[0], slot=s[1], remote_base_dir="~/mqi", actor="daemon"),
        "upload": lambda c, s, i: ledger.record_upload(
            c, attempt=case_attempt(c), files=i, bytes=i, seconds=0.5, digests=[["a", i, "0" * 64]],
            manifest_sha256="1" * 64, actor="daemon"),
        "enqueue": lambda c, s, i: ledger.record_enqueued(
            c, attempt=case_attempt(c), task_id=i, created_at=T0 + timedelta(seconds=i),
            actor="daemon"),
        "start": lambda c, s, i: ledger.record_started(
            c, attempt=case_attempt(c), started_at=T0, actor="daemon"),
        "succeed": lambda c, s, i: ledger.record_remote_success(
            c, attempt=case_attempt(c), ended_at=T0, actor="daemon"),
        "complete": lambda c, s, i: ledger.complete_case(
            c, attempt=case_attempt(c), files=i, bytes=i, results_dir=f"/r/{c}",
            digests=[["RD.dcm", i, "2" * 64]], manifest_sha256="3" * 64, actor="daemon"),
        "fail": lambda c, s, i: ledger.fail_case(
            c, category=list(FailureCategory)[i % 4], actor="daemon", reason=f"r{i}",
            exit_code=i, quarantine=i % 3 == 0, quarantine_task_id=i),
        "abandon": lambda c, s, i: ledger.abandon_attempt(
            c, not_before=T0 + timedelta(seconds=i), charged=i % 2 == 0, actor="daemon",
            reason="lost"),
        "kill": lambda c, s, i: ledger.request_kill(
            c, cause=list(KillCause)[i % 2], actor="daemon", reason="timeout"),
        "cancel": lambda c, s, i: ledger.cancel_case(c, actor="user:alice", reason="cancel"),
        "retry": lambda c, s, i: ledger.retry_case(c, actor="user:alice", reason="retry"),
        "timeout": lambda c, s, i: ledger.set_case_timeout(
            c, hours=float(i + 1), actor="user:alice", reason="long plan"),
        "unreachable": lambda c, s, i: ledger.record_host_unavailable(
            s[0], state=list(HostState)[2 + i % 4], since=T0, actor="daemon", reason="refused"),
        "reachable": lambda c, s, i: ledger.record_host_reachable(
            s[0], at=T0 + timedelta(seconds=i), actor="daemon"),
        "busy": lambda c, s, i: ledger.mark_slot_busy(
            s[0], s[1], task_ids=[i], actor="daemon", reason="foreign task"),
        "free": lambda c, s, i: ledger.mark_slot_free(s[0], s[1], actor="daemon", reason="gone"),
        "lift": lambda c, s, i: ledger.lift_quarantine(s[0], s[1], actor="daemon", reason="ok"),
        "resumed": lambda c, s, i: ledger.record_slot_resumed(
            s[0], s[1], actor="daemon", reason="paused"),
    }  # fmt: skip


# What an operator or the daemon may plausibly do to a case in each state (a few
# commands are refused there, which must record nothing).
PLAUSIBLE = {
    None: ["detect"],
    "waiting": ["submit", "submit", "hold", "cancel", "timeout"],
    "held": ["restabilize", "cancel", "submit"],
    "submitting": ["upload", "enqueue", "enqueue", "abandon", "hold", "fail", "cancel"],
    "queued": ["start", "succeed", "kill", "fail", "abandon", "cancel"],
    "running": ["succeed", "kill", "fail", "abandon", "cancel", "timeout"],
    "killing": ["fail", "abandon", "cancel", "succeed"],
    "retrieving": ["complete", "fail", "abandon"],
    "completed": ["retry", "cancel"],
    "failed": ["retry", "retry", "cancel", "timeout"],
}
GLOBAL = ["unreachable", "reachable", "busy", "free", "lift", "resumed", "catch_up"]


@settings(max_examples=80)
@given(st.data())
def test_incremental_views_equal_replayed_views_and_the_aggregates(data):
    with tempfile.TemporaryDirectory() as root:
        check_views(data, Ledger(sqlite_event_store_env(Path(root) / "events.sqlite")), root)


@pytest.fixture(scope="module")
def shared_log(postgres_server):
    """One PostgreSQL database for every example, emptied before each."""
    from mqi_es.adapters.eventstore.postgres import prepare

    database = postgres_server.create_database("views_match_log")
    prepare(database)
    return database


@settings(max_examples=15)
@given(data=st.data())
def test_the_same_holds_on_a_postgresql_log(data, shared_log, postgres_server):
    from mqi_es.adapters.eventstore.postgres import postgres_event_store_env

    postgres_server.psql("TRUNCATE mqi_events RESTART IDENTITY", dbname="views_match_log")
    with tempfile.TemporaryDirectory() as root:
        check_views(data, Ledger(postgres_event_store_env(shared_log)), root)


def check_views(data, ledger: Ledger, root: str) -> None:
    """Random commands, views caught up at random moments, then compared with a replay
    and with the aggregates."""
    for name in ("n1", "n2"):
        ledger.register_host(name, "127.0.0.1", actor="daemon")
    for host, group in SLOTS:
        ledger.register_slot(host, group, actor="daemon")
    commands = _commands(ledger)
    feed = EventFeed(ledger)
    link = Path(root) / "views.sqlite"
    live = runner.open_views(link, feed)
    for _ in range(data.draw(st.integers(1, 80), label="steps")):
        case_id = data.draw(st.sampled_from(CASES))
        slot = data.draw(st.sampled_from(SLOTS))
        number = data.draw(st.integers(0, 50))
        if data.draw(st.integers(0, 5)) == 0:
            name = data.draw(st.sampled_from(GLOBAL))
        else:
            try:
                state = ledger.case(case_id).state.value
            except CaseNotFound:
                state = None
            name = data.draw(st.sampled_from(PLAUSIBLE[state]))
        if name == "catch_up":
            runner.catch_up(live, feed, batch=1 + number % 7)
            continue
        with contextlib.suppress(InvalidTransition, SlotError):
            commands[name](case_id, slot, number)  # a refused command records nothing
    runner.catch_up(live, feed, batch=3)
    live.close()

    report = runner.check(link, feed)
    assert report.ok, report.differences

    with ViewReader(link, application_name=ledger.name).snapshot() as views:
        for row in views.cases():
            case = ledger.case(row.case_id)
            assert (row.state, row.attempt, row.host, row.slot, row.label, row.task_id) == (
                case.state,
                case.attempt,
                case.host,
                case.slot,
                case.label,
                case.task_id,
            )
            assert (row.failure, row.infra_failures, row.not_before) == (
                case.failure,
                case.infra_failures,
                case.not_before,
            )
            assert (row.cancel_requested, row.kill_cause, row.timeout_hours) == (
                case.cancel_requested,
                case.kill_cause,
                case.timeout_hours,
            )
        for row in views.slots():
            slot = ledger.slot(row.host, row.name)
            assert (row.state, row.case_id, row.attempt, row.task_id) == (
                slot.state,
                slot.case_id,
                slot.attempt,
                slot.task_id,
            )
        for row in views.hosts():
            host = ledger.host(row.name)
            assert (row.state, row.unreachable_since) == (host.state, host.unreachable_since)
    feed.close()
    ledger.close()
