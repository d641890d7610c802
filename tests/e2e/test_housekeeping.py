"""Housekeeping by a real `mqi run` on the sandbox node: once a case's outcome is recorded
its task leaves pueue's queue; a completed case's folder goes after its retention (0 here),
a failed one's is kept longer; each removal is in the case's history. With housekeeping
off, the queue keeps every task."""

from pathlib import Path

from mqi_es.sandbox.site import EXITS_WITH_2, SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, mqi_json, remote_labels, wait_for


def site(tmp_path: Path, node, **housekeeping) -> Path:
    return write_config(tmp_path / "site", node, housekeeping=housekeeping)


def events(config: Path, case_id: str) -> list[tuple[str, dict]]:
    return [(e["event"], e["details"]) for e in mqi_json(config, "history", case_id)]


def test_finished_tasks_leave_the_queue_and_a_completed_case_folder_goes(tmp_path, sandbox_node):
    config = site(tmp_path, sandbox_node, remote_retention_hours=0, keep_failed_remote_hours=336)
    incoming = config.parent / "incoming"
    drop_case(incoming, "patient-1", SUCCEEDS)
    drop_case(incoming, "patient-2", EXITS_WITH_2)
    daemon = DaemonProcess(config)
    cases_dir = sandbox_node.home / "mqi_cases"
    try:
        wait_for(all_ended(config, ["patient-1", "patient-2"]), timeout=90, daemon=daemon)
        wait_for(lambda: remote_labels(sandbox_node) == [], timeout=30, daemon=daemon)
        wait_for(lambda: not (cases_dir / "patient-1").exists(), timeout=30, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert (cases_dir / "patient-2" / "attempt-1" / "run.sh").is_file()  # failed: kept 336 h
    done = events(config, "patient-1")
    assert ("TaskRemoved", {"attempt": 1, "task_id": done_task_id(done)}) in done
    assert ("FolderRemoved", {"host": "sandbox", "folder": "~/mqi_cases/patient-1"}) in done
    failed = [name for name, _ in events(config, "patient-2")]
    assert "TaskRemoved" in failed and "FolderRemoved" not in failed
    assert [c["state"] for c in mqi_json(config, "cases")] == ["completed", "failed"]


def done_task_id(trail: list[tuple[str, dict]]) -> int:
    return next(details["task_id"] for name, details in trail if name == "TaskEnqueued")


def test_with_housekeeping_off_every_task_stays_in_the_queue(tmp_path, sandbox_node):
    config = site(tmp_path, sandbox_node, remove_finished_tasks=False)
    drop_case(config.parent / "incoming", "patient-1", SUCCEEDS)
    daemon = DaemonProcess(config)
    try:
        wait_for(all_ended(config, ["patient-1"]), timeout=90, daemon=daemon)
        ended_at = mqi_json(config, "status")["last_cycle_at"]
        wait_for(lambda: mqi_json(config, "status")["last_cycle_at"] != ended_at, timeout=30)
    finally:
        assert daemon.stop() == 0
    assert remote_labels(sandbox_node) == ["mqi:patient-1:a1"]
    assert (sandbox_node.home / "mqi_cases" / "patient-1").is_dir()  # 72 h by default
