"""The daemon's transfers board, as `mqi status` reads it."""

import os
import stat

from mqi_es.progress import ProgressBoard, Transfer, read_transfers, transfers_file


def test_status_sees_the_running_daemons_transfers_and_not_a_dead_ones(tmp_path):
    path = transfers_file(tmp_path / "events.sqlite")
    board = ProgressBoard(path)
    board.update(Transfer("c1", "upload", 4096, 10_000))
    assert read_transfers(path, os.getpid()) == [Transfer("c1", "upload", 4096, 10_000)]
    assert read_transfers(path, os.getpid() + 1) == []  # left by a daemon that is gone
    assert read_transfers(path, None) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    board.finish("c1")
    assert read_transfers(path, os.getpid()) == []


def test_a_missing_or_torn_file_shows_no_transfer(tmp_path):
    path = transfers_file(tmp_path / "events.sqlite")
    assert read_transfers(path, os.getpid()) == []
    path.write_text('{"pid": ')
    assert read_transfers(path, os.getpid()) == []
