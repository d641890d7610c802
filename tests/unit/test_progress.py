"""The daemon's transfers board, as `mqi status` reads it."""

import os
import stat

from mqi_es.adapters.local.progress import ProgressBoard, Transfer, live_file, read_live


def test_status_sees_the_running_daemons_transfers_and_not_a_dead_ones(tmp_path):
    path = live_file(tmp_path / "events.sqlite")
    board = ProgressBoard(path)
    board.update(Transfer("c1", "upload", 4096, 10_000))
    assert read_live(path, os.getpid()).transfers == [Transfer("c1", "upload", 4096, 10_000)]
    assert read_live(path, os.getpid() + 1).transfers == []  # left by a daemon that is gone
    assert read_live(path, None).transfers == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    board.finish("c1")
    assert read_live(path, os.getpid()).transfers == []


def test_a_missing_or_torn_file_shows_no_transfer(tmp_path):
    path = live_file(tmp_path / "events.sqlite")
    assert read_live(path, os.getpid()).transfers == []
    path.write_text('{"pid": ')
    assert read_live(path, os.getpid()).transfers == []


def test_status_sees_each_hosts_last_measured_skew(tmp_path):
    path = live_file(tmp_path / "events.sqlite")
    board = ProgressBoard(path)
    board.clocks({"n1": 0.25, "n2": None})
    board.clocks({"n1": -3.5})  # n2 not seen this cycle: its last reading stays
    assert read_live(path, os.getpid()).skews == {"n1": -3.5, "n2": None}
