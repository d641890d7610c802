"""sd_notify against a real AF_UNIX datagram socket, as systemd listens on it."""

import logging
import socket

import pytest

from mqi_es.adapters.local.systemd import Systemd


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def messages(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().splitlines()


def test_ready_once_after_the_first_cycle_then_a_watchdog_ping_after_each(listener):
    sock, path = listener
    systemd = Systemd({"NOTIFY_SOCKET": path})
    systemd.cycle_completed("2 active case(s)")
    assert messages(sock) == ["READY=1", "WATCHDOG=1", "STATUS=2 active case(s)"]
    systemd.cycle_completed("1 active case(s)")
    assert messages(sock) == ["WATCHDOG=1", "STATUS=1 active case(s)"]
    systemd.stopping()
    assert messages(sock) == ["STOPPING=1"]


def test_an_abstract_socket_written_with_an_at_sign_is_reached():
    name = f"mqi-test-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        Systemd({"NOTIFY_SOCKET": "@" + name}).cycle_completed("ok")
        assert messages(sock)[:2] == ["READY=1", "WATCHDOG=1"]
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    systemd = Systemd({})
    assert not systemd.enabled
    systemd.cycle_completed("ok")
    systemd.stopping()
    assert not systemd.ready


def test_a_socket_that_is_gone_is_said_once_and_ready_is_sent_when_it_is_back(tmp_path, caplog):
    path = tmp_path / "notify"
    systemd = Systemd({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.WARNING, logger="mqi.daemon"):
        systemd.cycle_completed("ok")
        systemd.cycle_completed("ok")
    assert [r.message for r in caplog.records].count(
        f"cannot tell systemd we are alive ({path}): [Errno 2] No such file or directory"
    ) == 1
    assert not systemd.ready
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        systemd.cycle_completed("ok")
        assert messages(sock)[0] == "READY=1"  # never sent before, so it is sent now
    finally:
        sock.close()
