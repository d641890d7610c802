"""A real `mqi run` left alone: it rebuilds its own damaged views, stops when its log is
taken from under it, re-reads its configuration on SIGHUP, and shows each node's clock."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from projections import generations
from tests.e2e.daemon_harness import DaemonProcess, all_ended, cases, mqi_json, wait_for


@pytest.fixture
def site(tmp_path: Path, sandbox_node):
    return write_config(tmp_path / "site", sandbox_node), sandbox_node


def log_text(config: Path) -> str:
    log = config.parent / "var" / "logs" / "mqi.log"
    return log.read_text() if log.exists() else ""


def test_the_daemon_rebuilds_views_it_cannot_read_and_carries_on(site):
    config, _ = site
    incoming = config.parent / "incoming"
    drop_case(incoming, "before", SUCCEEDS)
    daemon = DaemonProcess(config)
    try:
        wait_for(all_ended(config, ["before"]), timeout=60, daemon=daemon)
        views = generations.current(config.parent / "var" / "views.sqlite")
        views.write_bytes(b"\x00garbage, not a database\x00" * 4096)
        drop_case(incoming, "after", SUCCEEDS)

        def ended() -> dict | None:
            try:  # until the daemon has rebuilt them, its views cannot be read by others
                return all_ended(config, ["before", "after"])()
            except AssertionError as refused:
                assert "cannot be read" in str(refused)
                return None

        found = wait_for(ended, timeout=60, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert found["before"]["state"] == found["after"]["state"] == "completed"
    text = log_text(config)
    assert "ALARM the views" in text and "rebuilding them from the log" in text
    assert mqi_json(config, "status")["views_behind_log"] == 0


def test_a_log_replaced_under_a_running_daemon_stops_it_loudly(site, tmp_path):
    config, _ = site
    other = tmp_path / "other.sqlite"  # another site's log
    ledger = Ledger(sqlite_event_store_env(other))
    ledger.start_log()
    ledger.close()
    daemon = DaemonProcess(config)
    try:
        wait_for(lambda: "daemon started" in log_text(config), timeout=30, daemon=daemon)
        other.replace(config.parent / "var" / "events.sqlite")
        code = daemon.wait(timeout=30)
    finally:
        daemon.stop()
    assert code == 1
    assert "was replaced by another file while the daemon was writing to it" in daemon.output()
    assert "CRITICAL" in log_text(config)


def test_sighup_restarts_on_the_new_configuration_and_keeps_the_old_one_if_it_is_broken(site):
    config, _ = site
    daemon = DaemonProcess(config)
    pid = daemon.process.pid
    try:
        wait_for(lambda: log_text(config).count("daemon started") == 1, timeout=30, daemon=daemon)
        good = config.read_text()
        config.write_text(good + "bogus_section: 1\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "the configuration was not reloaded" in log_text(config), timeout=30,
                 daemon=daemon)  # fmt: skip
        assert daemon.process.poll() is None and log_text(config).count("daemon started") == 1

        settings = yaml.safe_load(good)
        settings["main_loop"]["sleep_interval_seconds"] = 0.25
        config.write_text(yaml.safe_dump(settings))
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: log_text(config).count("daemon started") == 2, timeout=30,
                 daemon=daemon)  # fmt: skip
        drop_case(config.parent / "incoming", "after-reload", SUCCEEDS)
        found = wait_for(all_ended(config, ["after-reload"]), timeout=60, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert daemon.process.pid == pid  # the same process: systemd's ExecReload is enough
    assert found["after-reload"]["state"] == "completed"
    text = log_text(config)
    assert "SIGHUP: starting again on the re-read configuration" in text
    assert text.index("daemon stopped") < text.rindex("daemon started")


def test_status_shows_a_nodes_clock_skew_and_the_daemon_alarms_once(site):
    config, node = site
    fake_date = node.bin_dir / "date"  # first on the node's PATH: a clock 5 minutes ahead
    fake_date.write_text('#!/bin/sh\nexec /bin/date -d "@$(( $(/bin/date +%s) + 300 ))" "$@"\n')
    fake_date.chmod(0o700)
    daemon = DaemonProcess(config)
    try:
        status = wait_for(
            lambda: (s := mqi_json(config, "status"))["hosts"]
            and s["hosts"][0]["clock_skew_seconds"] is not None and s,
            timeout=30, daemon=daemon,
        )  # fmt: skip
        time.sleep(2)  # several polls more: still one alarm
    finally:
        assert daemon.stop() == 0
    skew = status["hosts"][0]["clock_skew_seconds"]
    assert 298 < skew < 302
    assert log_text(config).count("ALARM host sandbox: the clock of host sandbox is +") == 1
    (alarm,) = mqi_json(config, "alarms")
    assert (alarm["kind"], alarm["state"], alarm["subject"]) == (
        "clock_skew",
        "open",
        "host sandbox",
    )
    assert cases(config) == {}
