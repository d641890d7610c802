"""The PostgreSQL store against a real server: how it is reached (a password file, libpq's
PGPASSFILE, a wrong password), its schema made by several daemons at once, the follower
that wakes a standby, and the refusal of a log that is not the views' own."""

from __future__ import annotations

import multiprocessing
import threading

import msgspec
import pytest

from mqi_es.adapters.eventstore import stores
from mqi_es.adapters.eventstore.postgres import (
    LogFollower,
    inspect_log,
    postgres_event_store_env,
    prepare,
)
from mqi_es.app.ledger import Ledger
from mqi_es.core.errors import ConfigError, LogRefused, StoreUnreachable


def test_the_password_may_come_from_libpqs_own_file(postgres_db, postgres_server, tmp_path,
                                                     monkeypatch):  # fmt: skip
    passfile = tmp_path / "pgpass"
    dsn = postgres_db.dsn
    passfile.write_text(
        f"{dsn.host}:{dsn.port}:{dsn.dbname}:{dsn.user}:{postgres_server.password}\n"
    )
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    without = msgspec.structs.replace(postgres_db, password_file=None)
    assert inspect_log(without).exists
    ledger = Ledger(postgres_event_store_env(without))
    assert ledger.start_log()


def test_a_wrong_password_is_refused_clearly_and_never_shown(postgres_db, tmp_path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    with pytest.raises(StoreUnreachable) as refused:
        inspect_log(msgspec.structs.replace(postgres_db, password_file=wrong))
    message = str(refused.value)
    assert postgres_db.where in message and "password authentication failed" in message
    assert "not-the-password" not in message


def test_a_missing_or_empty_password_file_is_a_configuration_error(postgres_db, tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        postgres_event_store_env(
            msgspec.structs.replace(postgres_db, password_file=tmp_path / "none")
        )
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        postgres_event_store_env(
            msgspec.structs.replace(postgres_db, password_file=tmp_path / "empty")
        )


def _prepare(database, barrier, results) -> None:
    barrier.wait(timeout=30)
    try:
        prepare(database)
    except Exception as exc:  # reported, not raised: the parent counts them
        results.put(repr(exc))
    else:
        results.put("ok")


def test_four_daemons_creating_the_schema_at_once_all_succeed(postgres_server) -> None:
    """Measured: eventsourcing's table creation from two processes at once fails one time
    in four ("tuple concurrently updated"); ours goes one at a time."""
    database = postgres_server.create_database("schema_race")
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(4), spawn.Queue()
    workers = [spawn.Process(target=_prepare, args=(database, barrier, results))
               for _ in range(4)]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [results.get(timeout=5) for _ in workers] == ["ok"] * 4
    assert stores.inspect(database).exists


def test_the_follower_wakes_a_standby_when_the_log_grows(postgres_db) -> None:
    ledger = Ledger(postgres_event_store_env(postgres_db))
    ledger.start_log()
    follower = LogFollower(ledger.recorder)
    try:
        assert follower.wait(0.3) is False  # nothing new
        writer = threading.Timer(0.2, lambda: ledger.register_host("n1", "x", actor="daemon"))
        writer.start()
        assert follower.wait(10) is True
        writer.join()
        assert follower.broken is False
    finally:
        follower.close()


def test_a_daemon_stops_when_its_log_is_another_or_lost_events_not_when_unreachable(
    postgres_db, postgres_server
) -> None:
    ledger = Ledger(postgres_event_store_env(postgres_db))
    log_id = ledger.start_log()
    ledger.register_host("n1", "x", actor="daemon")
    head = stores.inspect(postgres_db).head
    stores.guard(postgres_db, log_id).verify(head)  # its own log, complete
    with pytest.raises(LogRefused, match="now holds another log"):
        stores.guard(postgres_db, "0" * 32).verify(head)
    with pytest.raises(LogRefused, match="lost events"):
        stores.guard(postgres_db, log_id).verify(head + 5)
    unreachable = msgspec.structs.replace(
        postgres_db, dsn=msgspec.structs.replace(postgres_db.dsn, port=1)
    )
    stores.guard(unreachable, log_id).verify(head)  # nothing known: not a reason to stop
