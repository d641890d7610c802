"""Kill the daemon at every step of a case's life, restart it, and check nothing is lost
or done twice: exactly one remote task per attempt, no lost case, no GPU left allocated,
and a history that tells the whole story."""

from pathlib import Path

import pytest

from mqi_es.adapters.local.failpoints import EXIT_CODE, STEPS
from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, mqi_json, remote_labels, wait_for


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_is_recovered_without_duplicates(step, tmp_path: Path, sandbox_node):
    config = write_config(tmp_path / "site", sandbox_node)
    # Long enough to be seen running, so every step of the success path is passed.
    drop_case(config.parent / "incoming", "crash-case", "sleep 2\n" + SUCCEEDS)

    crashing = DaemonProcess(config, failpoint=step)
    assert crashing.wait(timeout=60) == EXIT_CODE, crashing.output()
    crashing.stop()

    restarted = DaemonProcess(config)
    try:
        found = wait_for(all_ended(config, ["crash-case"]), timeout=90, daemon=restarted)
    finally:
        assert restarted.stop() == 0
    case = found["crash-case"]
    assert case["state"] == "completed", case
    downloaded = sorted(p.name for p in (Path(case["results_dir"]) / "output").iterdir())
    assert downloaded == ["RD_beam1.dcm", "RD_beam2.dcm"]

    labels = remote_labels(sandbox_node)
    assert len(labels) == len(set(labels)), labels  # never two tasks for one attempt
    assert len(labels) <= case["attempt"]
    assert all(g["state"] == "free" for g in mqi_json(config, "gpus"))

    trail = mqi_json(config, "history", "crash-case")
    events = [e["event"] for e in trail]
    for expected in ("Detected", "SubmissionStarted", "TaskEnqueued", "RemoteSucceeded",
                     "Completed"):  # fmt: skip
        assert expected in events, (expected, events)
    allocated = [e for e in trail if e["event"] == "Allocated"]
    released = [e for e in trail if e["event"] == "Released"]
    assert len(allocated) == len(released) == case["attempt"], events
