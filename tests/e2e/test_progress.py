"""How far a run got, end to end: a real `mqi run` reads the tails of the sandbox node's
running task (MOQUI's own progress lines), `mqi cases` shows it while the case runs, and the
history holds one ProgressReported per tenth of the run, never one per line."""

from pathlib import Path

from mqi_es.sandbox.site import drop_case, simulates, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, cases, mqi_json, wait_for


def test_a_running_case_shows_its_progress_and_its_history_keeps_each_tenth(
    tmp_path: Path, sandbox_node
) -> None:
    config = write_config(tmp_path / "site", sandbox_node,
                          main_loop={"progress_interval_seconds": 0.5})  # fmt: skip
    drop_case(config.parent / "incoming", "patient-1", simulates(batches=20, seconds_per_batch=0.4))
    daemon = DaemonProcess(config)
    shown = []
    try:

        def running_with_progress():
            case = cases(config).get("patient-1", {})
            if case.get("state") == "running" and case.get("progress"):
                shown.append(case["progress"])
            return len(shown) >= 3

        wait_for(running_with_progress, timeout=60, daemon=daemon, interval=0.3)
        wait_for(all_ended(config, ["patient-1"]), timeout=60, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert all(p["total"] == 20 and 1 <= p["done"] <= 20 for p in shown)
    assert [p["done"] for p in shown] == sorted(p["done"] for p in shown)  # it moves on
    (case,) = mqi_json(config, "cases")
    assert case["state"] == "completed" and case["progress"]["total"] == 20  # how far it got
    reported = [e["details"] for e in mqi_json(config, "history", "patient-1")
                if e["event"] == "ProgressReported"]  # fmt: skip
    assert 2 <= len(reported) <= 11, reported
    tenths = [10 * r["done"] // r["total"] for r in reported]
    assert tenths == sorted(set(tenths)), reported  # each tenth at most once, in order
    assert all(r["attempt"] == 1 for r in reported)
