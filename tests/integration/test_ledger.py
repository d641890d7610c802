"""The Ledger on a real SQLite file and on a real PostgreSQL server (the same rules on
both): atomic saves, idempotence, concurrency, permissions; on PostgreSQL, the fence."""

import multiprocessing
import stat
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from mqi_es.adapters.eventstore.postgres import postgres_event_store_env
from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.errors import (
    CaseNotFound,
    ConcurrentUpdate,
    Fenced,
    NameClash,
    SlotUnavailable,
)
from mqi_es.core.ids import case_uuid
from mqi_es.core.states import CaseState, FailureCategory, SlotState

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def open_ledger(path: Path) -> Ledger:
    return Ledger(sqlite_event_store_env(path))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The eventsourcing environment of an empty log, in SQLite or in PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_event_store_env(tmp_path / "var" / "events.sqlite")
    return postgres_event_store_env(request.getfixturevalue("postgres_db"))


@pytest.fixture
def ledger(store: dict[str, str]) -> Ledger:
    ledger = Ledger(store)
    ledger.register_host("n1", "127.0.0.1", actor="daemon")
    for group in ("gpu0", "gpu1"):
        ledger.register_slot("n1", group, actor="daemon")
    return ledger


def detect(ledger: Ledger, case_id: str) -> int | None:
    return ledger.detect_case(
        case_id, file_count=2, total_bytes=20, fingerprint="fp", actor="daemon"
    )


def test_detecting_the_same_case_twice_records_it_once(ledger, store):
    assert detect(ledger, "c1") is not None
    assert detect(ledger, "c1") is None
    reopened = Ledger(store)
    assert detect(reopened, "c1") is None
    assert reopened.register_slot("n1", "gpu0", actor="daemon") is None
    assert len(reopened.recorder.select_events(reopened.case("c1").id)) == 1


def test_allocation_and_submission_are_one_transaction(ledger):
    detect(ledger, "c1")
    before = ledger.recorder.max_notification_id()
    last = ledger.start_submission(
        "c1", host="n1", slot="gpu0", remote_base_dir="~/mqi", actor="daemon"
    )
    new = ledger.recorder.select_notifications(before + 1, 10)
    assert [n.topic.rsplit(".", 1)[-1] for n in new] == ["SubmissionStarted", "Allocated"]
    assert last == new[-1].id
    assert ledger.slot("n1", "gpu0").case_id == "c1"


def test_a_refused_allocation_records_nothing_for_either_aggregate(ledger):
    detect(ledger, "c1")
    detect(ledger, "c2")
    ledger.start_submission("c1", host="n1", slot="gpu0", remote_base_dir="~", actor="daemon")
    before = ledger.recorder.max_notification_id()
    with pytest.raises(SlotUnavailable):
        ledger.start_submission("c2", host="n1", slot="gpu0", remote_base_dir="~", actor="d")
    assert ledger.recorder.max_notification_id() == before
    assert ledger.case("c2").state is CaseState.WAITING


def test_failing_a_case_releases_its_slot_in_the_same_save(ledger):
    detect(ledger, "c1")
    ledger.start_submission("c1", host="n1", slot="gpu1", remote_base_dir="~", actor="daemon")
    ledger.record_enqueued("c1", attempt=1, task_id=3, created_at=NOW, actor="daemon")
    before = ledger.recorder.max_notification_id()
    ledger.fail_case(
        "c1", category=FailureCategory.CASE_FAILURE, actor="daemon", reason="exit 2", exit_code=2
    )
    new = ledger.recorder.select_notifications(before + 1, 10)
    assert [n.topic.rsplit(".", 1)[-1] for n in new] == ["Failed", "Released", "Raised"]
    assert ledger.slot("n1", "gpu1").state is SlotState.FREE


def test_an_unconfirmed_kill_quarantines_the_slot_instead_of_freeing_it(ledger):
    detect(ledger, "c1")
    ledger.start_submission("c1", host="n1", slot="gpu0", remote_base_dir="~", actor="daemon")
    ledger.fail_case(
        "c1", category=FailureCategory.TIMEOUT, actor="daemon", reason="kill unconfirmed",
        quarantine=True, quarantine_task_id=9,
    )  # fmt: skip
    slot = ledger.slot("n1", "gpu0")
    assert (slot.state, slot.case_id, slot.task_id) == (SlotState.QUARANTINED, "c1", 9)


def test_cancelling_a_waiting_case_ends_it_at_once(ledger):
    detect(ledger, "c1")
    ledger.cancel_case("c1", actor="user:alice", reason="wrong plan")
    case = ledger.case("c1")
    assert (case.state, case.failure) == (CaseState.FAILED, FailureCategory.CANCELLED)


def test_an_unknown_case_is_a_clear_error(ledger):
    with pytest.raises(CaseNotFound, match="'nope'"):
        ledger.case("nope")


def test_the_database_files_are_readable_by_the_owner_only(tmp_path):
    ledger = open_ledger(tmp_path / "var" / "events.sqlite")
    detect(ledger, "c1")
    var = tmp_path / "var"
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    files = sorted(var.iterdir())
    assert [f.name for f in files] == ["events.sqlite", "events.sqlite-shm", "events.sqlite-wal"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def _allocate_after_barrier(env: dict[str, str], case_id: str, barrier, results) -> None:
    ledger = Ledger(env)
    case = ledger.case(case_id)
    slot = ledger.slot("n1", "gpu0")
    case.start_submission(host="n1", slot="gpu0", remote_base_dir="~", actor=case_id)
    slot.allocate(case_id=case_id, attempt=case.attempt, actor=case_id)
    barrier.wait(timeout=30)  # both hold the same slot version now
    try:
        ledger._commit(case, slot)
    except ConcurrentUpdate:
        results.put((case_id, "refused"))
    else:
        results.put((case_id, "saved"))


def test_two_processes_allocating_one_gpu_only_one_wins(ledger, store):
    detect(ledger, "c1")
    detect(ledger, "c2")
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    workers = [
        spawn.Process(target=_allocate_after_barrier, args=(store, c, barrier, results))
        for c in ("c1", "c2")
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    outcome = dict(results.get(timeout=5) for _ in workers)
    assert sorted(outcome.values()) == ["refused", "saved"]
    winner = next(c for c, result in outcome.items() if result == "saved")
    loser = next(c for c, result in outcome.items() if result == "refused")
    fresh = Ledger(store)
    assert fresh.slot("n1", "gpu0").case_id == winner
    assert fresh.case(winner).state is CaseState.SUBMITTING
    assert fresh.case(loser).state is CaseState.WAITING


def _detect_after_barrier(env: dict[str, str], case_id: str, barrier, results) -> None:
    ledger = Ledger(env)
    barrier.wait(timeout=30)
    try:
        results.put(detect(ledger, case_id) is not None)
    except ConcurrentUpdate:
        results.put(False)


def test_two_intakes_registering_one_case_at_once_create_one_case(store):
    """Two daemons watch one share: both see the folder at the same moment."""
    Ledger(store).start_log()  # the log exists (an SQLite file is created by one daemon)
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    workers = [
        spawn.Process(target=_detect_after_barrier, args=(store, "shared", barrier, results))
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in workers) == [False, True]
    fresh = Ledger(store)
    events = fresh.recorder.select_events(case_uuid("shared"))
    assert [e.originator_version for e in events] == [1]  # one case, registered once


NFC, NFD = "M\u00fcller plan", "Mu\u0308ller plan"  # the same name to a reader


def test_a_name_that_differs_only_by_unicode_normalisation_is_a_clash_not_a_second_case(ledger):
    detect(ledger, NFC)
    with pytest.raises(NameClash, match="differs from that of case 'Müller plan' only in"):
        detect(ledger, NFD)
    assert not ledger.knows(case_uuid(NFD))


def test_letter_case_clashes_only_where_a_node_folds_case(tmp_path):
    plain = open_ledger(tmp_path / "plain.sqlite")
    detect(plain, "Case7")
    detect(plain, "CASE7")  # a node that tells them apart: two cases
    folding = Ledger(sqlite_event_store_env(tmp_path / "folding.sqlite"), fold_case=True)
    detect(folding, "Case7")
    with pytest.raises(NameClash):
        detect(folding, "CASE7")


def test_cases_registered_before_names_were_claimed_claim_them_and_clashes_are_named(tmp_path):
    path = tmp_path / "events.sqlite"
    earlier = Ledger(sqlite_event_store_env(path), fold_case=False)
    for name in ("Case7", "CASE7", "other"):
        detect(earlier, name)
    folding = Ledger(sqlite_event_store_env(path), fold_case=True)
    clashes = folding.claim_names(["Case7", "CASE7", "other"], actor="daemon")
    assert [(c.name, c.registered) for c in clashes] == [("CASE7", "Case7")]
    assert folding.claim_names(["Case7", "other"], actor="daemon") == []  # claimed already
    with pytest.raises(NameClash):
        detect(folding, "OTHER")


@pytest.fixture
def lease(postgres_db):
    from mqi_es.adapters.eventstore.lease import PostgresLease

    made = []

    def make(member: str) -> PostgresLease:
        made.append(PostgresLease(postgres_db, member=member, name=member, ttl=30))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_every_fact_a_leader_records_carries_its_term(postgres_db, lease):
    ledger = Ledger(postgres_event_store_env(postgres_db))
    ledger.lead(lease("a").campaign())
    detect(ledger, "c1")
    reader = Ledger(postgres_event_store_env(postgres_db))
    (created,) = reader.recorder.select_events(case_uuid("c1"))
    assert msgspec.msgpack.decode(created.state)["term"] == 1
    assert reader.case("c1").state is CaseState.WAITING


def test_a_former_leader_records_nothing_once_another_took_the_lease(postgres_db, lease):
    env = postgres_event_store_env(postgres_db)
    first, second = lease("a"), lease("b")
    old = Ledger(env)
    old.lead(first.campaign())
    detect(old, "c1")
    postgres_db_force_lapse(postgres_db)
    new = Ledger(env)
    new.lead(second.campaign())
    assert new.term == 2
    with pytest.raises(Fenced, match="term 1 is over"):
        detect(old, "c2")
    with pytest.raises(Fenced):
        old.register_host("n9", "10.0.0.9", actor="daemon")
    assert not new.knows(case_uuid("c2"))
    assert detect(new, "c2") is not None  # the new leader records as usual
    assert first.renew(1) is False  # and the old lease cannot be renewed back


def test_a_lease_is_held_by_one_daemon_until_it_lapses_or_is_released(postgres_db, lease):
    first, second = lease("a"), lease("b")
    term = first.campaign()
    assert second.campaign() is None
    assert first.renew(term)
    first.release(term)
    assert second.campaign() == term + 1
    assert first.campaign() is None
    standing = second.standing(seen_within=60)
    assert (standing.leader.member, standing.leader.term) == ("b", term + 1)


def postgres_db_force_lapse(database) -> None:
    """The lease lapses now, as if its holder had stopped renewing it long ago."""
    from mqi_es.adapters.eventstore.postgres import connection

    with connection(database) as conn:
        conn.execute("UPDATE mqi_lease SET expires_at = now() - interval '1 second'")
