"""`mqi store copy`: an SQLite log into an empty PostgreSQL store and back, ids, order and
bytes kept; `mqi replay --check` against the copy is clean; the copy goes on numbering."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mqi_es.adapters.eventstore import stores
from mqi_es.adapters.eventstore.postgres import postgres_event_store_env
from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.adapters.local.lock import DaemonLock
from mqi_es.app.ledger import Ledger
from mqi_es.config import load_config
from tests.e2e.daemon_harness import MQI, mqi_json


def mqi(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MQI, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def write(path: Path, database: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"database": database}))
    return path


def postgres_section(database, folder: Path) -> dict:
    """The site's database section, its password file kept in the site's own folder."""
    dsn = database.dsn
    password = folder / "pg.password"
    folder.mkdir(parents=True, exist_ok=True)
    password.write_bytes(database.password_file.read_bytes())
    password.chmod(0o600)
    return {
        "store": "postgres", "password_file": str(password),
        "dsn": {"host": dsn.host, "port": dsn.port, "dbname": dsn.dbname, "user": dsn.user},
        "views_path": "var/views.sqlite",
    }  # fmt: skip


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A site whose SQLite log holds cases, hosts and slots, its views built."""
    config = write(tmp_path / "site" / "mqi.yaml", {"path": "var/events.sqlite"})
    ledger = Ledger(sqlite_event_store_env(tmp_path / "site" / "var" / "events.sqlite"))
    ledger.start_log()
    ledger.register_host("n1", "10.0.0.1", actor="daemon")
    ledger.register_slot("n1", "gpu0", actor="daemon")
    for i in range(30):
        ledger.detect_case(f"case-{i}", file_count=i, total_bytes=10 * i, fingerprint=f"f{i}",
                           actor="daemon")  # fmt: skip
    ledger.start_submission("case-3", host="n1", slot="gpu0", remote_base_dir="~", actor="daemon")
    ledger.close()
    assert mqi(config, "replay").returncode == 0
    return config


def sha_of(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"sha256\s+([0-9a-f]{64})", done.stdout).group(1)


def test_a_log_copied_to_postgresql_and_back_is_the_same_log(
    source: Path, tmp_path: Path, postgres_db
) -> None:
    shared = write(
        tmp_path / "shared" / "mqi.yaml", postgres_section(postgres_db, tmp_path / "shared")
    )
    there = sha_of(mqi(source, "store", "copy", "--to", str(shared)))
    assert mqi(shared, "replay").returncode == 0
    check = mqi(shared, "replay", "--check")
    assert check.returncode == 0 and "no difference" in check.stdout, check.stdout
    assert mqi_json(shared, "cases") == mqi_json(source, "cases")
    assert mqi_json(shared, "history", "case-3") == mqi_json(source, "history", "case-3")

    backup = write(tmp_path / "backup" / "mqi.yaml", {"path": "var/events.sqlite"})
    assert sha_of(mqi(shared, "store", "copy", "--to", str(backup))) == there
    assert mqi(backup, "replay").returncode == 0
    assert mqi_json(backup, "cases") == mqi_json(source, "cases")

    # The copy goes on from where the source stopped, with the same identity.
    head = stores.inspect(postgres_db).head
    ledger = Ledger(postgres_event_store_env(postgres_db))
    # Two events: the case and its name's claim.
    assert ledger.detect_case("later", file_count=1, total_bytes=1, fingerprint="x",
                              actor="daemon") == head + 2  # fmt: skip
    assert ledger.log_id == stores.inspect(load_config(source).config.database).log_id


def test_a_copy_into_a_store_that_holds_a_log_is_refused_and_changes_nothing(
    source: Path, tmp_path: Path, postgres_db
) -> None:
    shared = write(
        tmp_path / "shared" / "mqi.yaml", postgres_section(postgres_db, tmp_path / "shared")
    )
    sha_of(mqi(source, "store", "copy", "--to", str(shared)))
    head = stores.inspect(postgres_db).head
    again = mqi(source, "store", "copy", "--to", str(shared))
    assert again.returncode != 0
    assert f"already holds a log ({head} events)" in again.stderr
    assert stores.inspect(postgres_db).head == head


def test_a_copy_of_a_log_a_daemon_writes_is_refused(source: Path, tmp_path: Path) -> None:
    backup = write(tmp_path / "backup" / "mqi.yaml", {"path": "var/events.sqlite"})
    lock = DaemonLock(source.parent / "var" / "mqi.lock")
    lock.acquire(user="test")
    try:
        done = mqi(source, "store", "copy", "--to", str(backup))
    finally:
        lock.release()
    assert done.returncode != 0 and "stop it first" in done.stderr, done.stderr
    assert not (tmp_path / "backup" / "var" / "events.sqlite").exists()
