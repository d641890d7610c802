"""The daemon's transfers board, as `mqi status` reads it."""

import os
import stat

from mqi_es.adapters.local.progress import ProgressBoard, Transfer, live_file, read_live
from mqi_es.core.run_progress import RunProgress


def test_status_sees_the_running_daemons_transfers_and_not_a_dead_ones(tmp_path):
    path = live_file(tmp_path)
    board = ProgressBoard(path)
    board.update(Transfer("c1", "upload", 4096, 10_000))
    assert read_live(path, os.getpid()).transfers == [Transfer("c1", "upload", 4096, 10_000)]
    assert read_live(path, os.getpid() + 1).transfers == []  # left by a daemon that is gone
    assert read_live(path, None).transfers == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    board.finish("c1")
    assert read_live(path, os.getpid()).transfers == []


def test_a_missing_or_torn_file_shows_no_transfer(tmp_path):
    path = live_file(tmp_path)
    assert read_live(path, os.getpid()).transfers == []
    path.write_text('{"pid": ')
    assert read_live(path, os.getpid()).transfers == []


def test_status_sees_each_hosts_last_measured_skew(tmp_path):
    path = live_file(tmp_path)
    board = ProgressBoard(path)
    board.clocks({"n1": 0.25, "n2": None})
    board.clocks({"n1": -3.5})  # n2 not seen this cycle: its last reading stays
    assert read_live(path, os.getpid()).skews == {"n1": -3.5, "n2": None}


def test_status_sees_how_far_each_running_case_got_until_it_stops_running(tmp_path):
    path = live_file(tmp_path)
    board = ProgressBoard(path)
    output = "\n".join(f"line {i} " + "x" * 300 for i in range(40))
    board.runs({"c1": RunProgress(3, 18), "c2": RunProgress(1, 4)}, {"c1": output})
    live = read_live(path, os.getpid())
    assert live.runs == {"c1": RunProgress(3, 18), "c2": RunProgress(1, 4)}
    shown = live.tails["c1"].splitlines()
    assert len(shown) == 12 and shown[0].startswith("line 28 ") and len(shown[0]) == 240
    board.keep_runs(["c2"])
    live = read_live(path, os.getpid())
    assert live.runs == {"c2": RunProgress(1, 4)} and live.tails == {}


def test_runs_in_a_shape_this_release_does_not_write_are_not_shown(tmp_path):
    path = live_file(tmp_path)
    for runs in ('{"c1": [5, 0]}', '{"c1": "half"}', "[1, 2]", '{"c1": [9, 3]}'):
        path.write_text(f'{{"pid": {os.getpid()}, "runs": {runs}}}')
        assert read_live(path, os.getpid()).runs == {}
