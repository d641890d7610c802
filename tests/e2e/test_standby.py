"""Two real daemons on one PostgreSQL log and one watch folder: the leader is killed, frozen,
cut off, or its database restarted, with cases flowing; every case completes once, with
one remote task per attempt, and a former leader never records after its term."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from mqi_es.adapters.eventstore.postgres import connection
from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import (
    MQI,
    DaemonProcess,
    all_ended,
    mqi_json,
    notify_listener,
    remote_labels,
    wait_for,
)

TAKEOVER = 3.0  # ha.takeover_seconds for these tests


def site(root: Path, node, database, name: str, *, port: int | None = None) -> Path:
    """The configuration of daemon ``name``: its own var/, the shared folders and log."""
    dsn = database.dsn
    return write_config(
        root / name, node,
        database={
            "store": "postgres",
            "dsn": {"host": dsn.host, "port": port or dsn.port, "dbname": dsn.dbname,
                    "user": dsn.user},
            "password_file": str(database.password_file), "views_path": "var/views.sqlite",
            "connect_timeout_seconds": 2,
        },
        scanner={"watch_path": str(root / "share" / "incoming")},
        results={"local_path": str(root / "share" / "results")},
        ha={"takeover_seconds": TAKEOVER, "name": name},
        # A submission cut short is retried after command_timeout + 10 s (submit_settle).
        host={"command_timeout_seconds": 2},
    )  # fmt: skip


def pair(tmp_path: Path, node, database) -> tuple[Path, Path]:
    (tmp_path / "share" / "incoming").mkdir(parents=True)
    return site(tmp_path, node, database, "a"), site(tmp_path, node, database, "b")


def leader_of(config: Path) -> str | None:
    """Who leads, as `mqi status` says (None also while the daemon has no views yet)."""
    done = subprocess.run([MQI, "--config", str(config), "status", "--json"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if done.returncode not in (0, 3, 4):
        assert "has not built its views yet" in done.stderr, done.stderr
        return None
    leader = json.loads(done.stdout)["leadership"]["leader"]
    return leader["name"] if leader else None


def terms(database) -> list[tuple[int, int | None, str]]:
    """(notification id, term, topic) of every event of the log, in order."""
    with connection(database) as conn:
        rows = conn.execute(
            "SELECT notification_id, state, topic FROM mqi_events ORDER BY notification_id"
        ).fetchall()
    return [(nid, msgspec.msgpack.decode(bytes(state)).get("term"), topic)
            for nid, state, topic in rows]  # fmt: skip


def assert_terms_never_go_back(database) -> None:
    """No fact of a term is recorded after a fact of a later one (the fence)."""
    seen = [term for _, term, _ in terms(database) if term is not None]
    assert seen == sorted(seen), seen


def assert_exactly_once(node, found: dict, names: list[str]) -> None:
    labels = remote_labels(node)
    assert len(labels) == len(set(labels)), labels  # never two tasks for one attempt
    for name in names:
        assert found[name]["state"] == "completed", found[name]
        assert f"mqi:{name}:a{found[name]['attempt']}" in labels, (name, labels)
    # At most one per attempt: an attempt cut short before its submission has none.
    assert len(labels) <= sum(found[n]["attempt"] for n in names), labels


def replay_check(config: Path) -> None:
    done = subprocess.run([MQI, "--config", str(config), "replay", "--check"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no difference" in done.stdout


@pytest.mark.parametrize("moment", ["mid-upload", "after_submit"])
def test_the_leader_killed_mid_upload_or_mid_submit_is_replaced_without_a_duplicate(
    moment: str, tmp_path: Path, sandbox_node, postgres_db
) -> None:
    a, b = pair(tmp_path, sandbox_node, postgres_db)
    incoming = tmp_path / "share" / "incoming"
    first = DaemonProcess(a, failpoint=moment if moment != "mid-upload" else None)
    wait_for(lambda: leader_of(a) == "a", timeout=30, daemon=first)
    second = DaemonProcess(b)
    names = [f"case-{i}" for i in range(3)]
    try:
        # Big enough for the upload to take a while: the leader is killed during it.
        for name in names:
            drop_case(incoming, name, "sleep 1\n" + SUCCEEDS, plan_bytes=8_000_000)
        if moment == "mid-upload":
            wait_for(lambda: "upload 0/" in first.output(), timeout=60, daemon=first)
            first.process.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        wait_for(lambda: leader_of(b) == "b", timeout=TAKEOVER * 3, daemon=second)
        found = wait_for(all_ended(b, names), timeout=120, daemon=second)
        assert_exactly_once(sandbox_node, found, names)
        restarted = DaemonProcess(a)  # the old leader comes back: a standby now
        wait_for(lambda: len(mqi_json(b, "status")["leadership"]["standbys"]) == 1,
                 timeout=30, daemon=restarted)  # fmt: skip
        assert leader_of(a) == "b"
        assert restarted.stop() == 0
    finally:
        first.stop()
        assert second.stop() == 0
    replay_check(a)
    replay_check(b)
    assert_terms_never_go_back(postgres_db)


def test_a_former_leader_resumed_after_sigstop_records_nothing(
    tmp_path: Path, sandbox_node, postgres_db
) -> None:
    a, b = pair(tmp_path, sandbox_node, postgres_db)
    incoming = tmp_path / "share" / "incoming"
    first = DaemonProcess(a)
    wait_for(lambda: leader_of(a) == "a", timeout=30, daemon=first)
    second = DaemonProcess(b)
    try:
        drop_case(incoming, "before", "sleep 8\n" + SUCCEEDS)
        wait_for(lambda: mqi_json(a, "cases")[0]["state"] == "running" if mqi_json(a, "cases")
                 else None, timeout=60, daemon=first)  # fmt: skip
        first.process.send_signal(signal.SIGSTOP)  # frozen with a case running
        stopped_at = terms(postgres_db)[-1][0]
        wait_for(lambda: leader_of(b) == "b", timeout=TAKEOVER * 3, daemon=second)
        drop_case(incoming, "after", "sleep 1\n" + SUCCEEDS)
        wait_for(all_ended(b, ["after"]), timeout=60, daemon=second)
        first.process.send_signal(signal.SIGCONT)
        wait_for(lambda: "stopped leading at term 1" in first.output(), timeout=30, daemon=first)
        found = wait_for(all_ended(b, ["before", "after"]), timeout=90, daemon=second)
        assert_exactly_once(sandbox_node, found, ["before", "after"])
        # Its history tells who recorded what: begun under term 1, ended under term 2.
        trail = mqi_json(b, "history", "before")
        assert [e["term"] for e in trail] == sorted(e["term"] for e in trail)
        assert {e["term"] for e in trail} == {1, 2}, trail
    finally:
        first.stop()
        assert second.stop() == 0
    late = [(nid, term, topic) for nid, term, topic in terms(postgres_db)
            if nid > stopped_at and term == 1]  # fmt: skip
    assert not late, late  # nothing recorded under term 1 once it was frozen
    assert_terms_never_go_back(postgres_db)
    replay_check(a)


def test_the_database_down_at_start_or_restarted_under_a_running_daemon_loses_nothing(
    tmp_path: Path, sandbox_node, postgres_db, postgres_server
) -> None:
    a, _ = pair(tmp_path, sandbox_node, postgres_db)
    incoming = tmp_path / "share" / "incoming"
    names = [f"case-{i}" for i in range(4)]
    postgres_server.stop("immediate")
    try:
        daemon = DaemonProcess(a)  # it waits for its database instead of exiting
        wait_for(lambda: "cannot be reached" in daemon.output(), timeout=30, daemon=daemon)
    finally:
        postgres_server.start()
    try:
        wait_for(lambda: "daemon started" in daemon.output(), timeout=60, daemon=daemon)
        for name in names[:2]:
            drop_case(incoming, name, "sleep 2\n" + SUCCEEDS)
        wait_for(lambda: len(mqi_json(a, "cases")) == 2, timeout=30, daemon=daemon)
        postgres_server.stop("immediate")
        for name in names[2:]:
            drop_case(incoming, name, "sleep 1\n" + SUCCEEDS)  # arrive while it is down
        time.sleep(TAKEOVER * 1.5)  # longer than the lease: the daemon must stand by
        postgres_server.start()
        found = wait_for(all_ended(a, names), timeout=120, daemon=daemon)
        assert_exactly_once(sandbox_node, found, names)
    finally:
        assert daemon.stop() == 0
    replay_check(a)
    assert_terms_never_go_back(postgres_db)


def test_a_leader_cut_off_from_its_database_records_nothing_and_fails_nothing(
    tmp_path: Path, sandbox_node, postgres_db, cuttable_link
) -> None:
    (tmp_path / "share" / "incoming").mkdir(parents=True)
    a = site(tmp_path, sandbox_node, postgres_db, "a", port=cuttable_link.port)
    b = site(tmp_path, sandbox_node, postgres_db, "b")
    incoming = tmp_path / "share" / "incoming"
    first = DaemonProcess(a)
    wait_for(lambda: leader_of(b) == "a", timeout=30, daemon=first)
    second = DaemonProcess(b)
    names = [f"case-{i}" for i in range(3)]
    try:
        for name in names:
            drop_case(incoming, name, "sleep 3\n" + SUCCEEDS)
        wait_for(lambda: any(c["state"] == "running" for c in mqi_json(b, "cases")),
                 timeout=60, daemon=first)  # fmt: skip
        cuttable_link.cut()
        cut_at = terms(postgres_db)[-1][0]
        wait_for(lambda: leader_of(b) == "b", timeout=TAKEOVER * 3, daemon=second)
        found = wait_for(all_ended(b, names), timeout=90, daemon=second)
        cuttable_link.heal()
        wait_for(
            lambda: len(mqi_json(b, "status")["leadership"]["standbys"]) == 1,
            timeout=30,
            daemon=first,
        )  # the old leader stands by once it can reach it
        assert "lease of term 1" in first.output()
    finally:
        cuttable_link.heal()
        assert first.stop() == 0
        assert second.stop() == 0
    assert_exactly_once(sandbox_node, found, names)
    assert all(found[n]["failure"] is None for n in names), found
    late = [e for e in terms(postgres_db) if e[0] > cut_at and e[1] == 1]
    assert not late, late  # the cut-off leader recorded nothing
    assert_terms_never_go_back(postgres_db)
    replay_check(a)
    replay_check(b)


def test_systemd_hears_a_standby_is_alive_and_it_leads_without_stopping(
    tmp_path: Path, sandbox_node, postgres_db
) -> None:
    a, b = pair(tmp_path, sandbox_node, postgres_db)
    first = DaemonProcess(a)
    wait_for(lambda: leader_of(a) == "a", timeout=30, daemon=first)
    listener = notify_listener(tmp_path / "notify")
    second = DaemonProcess(b, env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    try:
        told = listener.recv(4096).decode().splitlines()
        assert told[:2] == ["READY=1", "WATCHDOG=1"], told
        assert told[2] == "STATUS=standing by: another daemon leads the log"
        assert listener.recv(4096).decode().startswith("WATCHDOG=1\n")
        shown = subprocess.run([MQI, "--config", str(b), "status"], capture_output=True,
                               text=True, timeout=60)  # fmt: skip
        assert shown.returncode == 0, shown.stdout  # a standby is not overdue
        assert "a leads (term 1" in shown.stdout and "standing by: b" in shown.stdout
        assert first.stop() == 0  # a clean stop releases the lease: b leads at once
        while "active case(s)" not in (message := listener.recv(4096).decode()):
            assert "STOPPING=1" not in message, message  # leading is no restart
        assert leader_of(b) == "b"
    finally:
        first.stop()
        assert second.stop() == 0
        listener.settimeout(5)
        while "STOPPING=1" not in listener.recv(4096).decode():
            pass
        listener.close()
