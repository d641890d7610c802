"""A real `mqi run` on a real Slurm cluster (one node, four fake GPUs) through its login
node (real OpenSSH), alone and beside a pueue node: each case runs once as a Slurm job,
its results come back, a failure keeps its exit code and output."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mqi_es.sandbox.site import EXITS_WITH_2, SUCCEEDS, drop_case, simulates, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, cases, mqi_json, wait_for
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import Sshd

SLURM = {"partition": "gpu", "slots": 4, "gres": "gpu:1"}


@pytest.fixture
def login(slurm_cluster: SlurmCluster, sshd_factory: Callable[..., Sshd]) -> Sshd:
    return sshd_factory(env=slurm_cluster.env)


def cluster_site(root: Path, login: Sshd) -> Path:
    return write_config(root, login, host={"name": "cluster", "backend": "slurm", "groups": [],
                                           "slurm": SLURM})  # fmt: skip


def jobs_named(cluster: SlurmCluster, case_id: str) -> list[str]:
    shown = cluster.run("squeue", "--noheader", "--states=all", "--format=%j|%T")
    return [line for line in shown.splitlines() if line.startswith(f"mqi:{case_id}:")]


def test_cases_run_as_slurm_jobs_once_each(tmp_path, slurm_cluster, login):
    config = cluster_site(tmp_path / "site", login)
    incoming = config.parent / "incoming"
    drop_case(incoming, "patient-1", SUCCEEDS)
    drop_case(incoming, "patient-2", EXITS_WITH_2)
    drop_case(incoming, "patient-3", simulates(batches=4, seconds_per_batch=0.5))
    daemon = DaemonProcess(config)
    try:
        found = wait_for(all_ended(config, ["patient-1", "patient-2", "patient-3"]), timeout=120,
                         daemon=daemon)  # fmt: skip
    finally:
        assert daemon.stop() == 0
    assert found["patient-1"]["state"] == "completed"
    assert found["patient-3"]["state"] == "completed"
    failed = found["patient-2"]
    assert (failed["state"], failed["failure"]) == ("failed", "case_failure")
    assert failed["exit_code"] == 2
    results = Path(found["patient-1"]["results_dir"])
    fetched = sorted(p.name for p in (results / "output").iterdir())
    assert fetched == ["RD_beam1.dcm", "RD_beam2.dcm"]
    for case_id in ("patient-1", "patient-2", "patient-3"):
        assert len(jobs_named(slurm_cluster, case_id)) == 1, case_id  # one job per attempt
    trail = mqi_json(config, "history", "patient-2")
    enqueued = next(e for e in trail if e["event"] == "TaskEnqueued")
    failure = next(e for e in trail if e["event"] == "Failed")
    assert enqueued["details"]["task_id"] > 0 and "dose grid does not cover" in (
        failure["details"]["log_tail"])  # fmt: skip
    assert any(e["event"] == "ProgressReported" for e in mqi_json(config, "history", "patient-3"))


def test_one_daemon_drives_a_pueue_node_and_a_slurm_cluster_together(
    tmp_path, slurm_cluster, login, sandbox_node
):
    config = write_config(tmp_path / "site", sandbox_node)
    settings = yaml.safe_load(config.read_text())
    cluster = {**settings["hosts"][0], "name": "cluster", "host": login.host, "port": login.port,
               "user": login.user, "key_file": str(login.key_file),
               "known_hosts": str(login.known_hosts), "backend": "slurm", "groups": [],
               "slurm": SLURM}  # fmt: skip
    settings["hosts"].append(cluster)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    names = [f"patient-{i}" for i in range(8)]
    for name in names:
        drop_case(config.parent / "incoming", name, simulates(batches=2, seconds_per_batch=1))
    daemon = DaemonProcess(config)
    try:
        found = wait_for(all_ended(config, names), timeout=180, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert {c["state"] for c in found.values()} == {"completed"}
    where = {
        next(e["details"]["host"] for e in mqi_json(config, "history", name)
             if e["event"] == "SubmissionStarted")
        for name in names
    }  # fmt: skip
    assert where == {"sandbox", "cluster"}  # both kinds of host took cases
    on_cluster = [n for n in names if jobs_named(slurm_cluster, n)]
    assert on_cluster and all(len(jobs_named(slurm_cluster, n)) == 1 for n in on_cluster)


def test_a_lost_sbatch_answer_then_a_crash_leaves_one_job_found_by_name(
    tmp_path, slurm_cluster, sshd_factory
):
    """sbatch submits, then its answer never comes back (a wrapper on the login node's PATH
    hangs after the real sbatch); the daemon is killed meanwhile. The next daemon finds the
    job by its name: one job, the case completes."""
    wrappers, submitted = tmp_path / "bin", tmp_path / "submitted"
    wrappers.mkdir()
    (wrappers / "sbatch").write_text(f"#!/bin/sh\n/usr/bin/sbatch \"$@\"\ntouch {submitted}\n"
                                     "sleep 120\n")  # fmt: skip
    (wrappers / "sbatch").chmod(0o755)
    login = sshd_factory(env=slurm_cluster.env, extra_path=[wrappers])
    config = cluster_site(tmp_path / "site", login)
    drop_case(config.parent / "incoming", "patient-1", SUCCEEDS)
    first = DaemonProcess(config)
    try:
        wait_for(submitted.exists, timeout=60, daemon=first)
    finally:
        first.process.kill()
        first.wait(30)
        first.stop()
    second = DaemonProcess(config)
    try:
        found = wait_for(all_ended(config, ["patient-1"]), timeout=120, daemon=second)
    finally:
        assert second.stop() == 0
    assert found["patient-1"]["state"] == "completed"
    assert len(jobs_named(slurm_cluster, "patient-1")) == 1  # never submitted twice
    trail = [e["event"] for e in mqi_json(config, "history", "patient-1")]
    assert trail.count("SubmissionStarted") == 1 and trail.count("TaskEnqueued") == 1


def test_more_cases_than_slots_queue_in_arrival_order_and_someone_elses_cancel_is_retried(
    tmp_path, slurm_cluster, login
):
    config = write_config(tmp_path / "site", login, host={
        "name": "cluster", "backend": "slurm", "groups": [],
        "slurm": {**SLURM, "slots": 2}})  # fmt: skip
    incoming = config.parent / "incoming"
    names = [f"patient-{i}" for i in range(5)]
    for name in names:
        drop_case(incoming, name, simulates(batches=2, seconds_per_batch=1)
                  if name != "patient-0" else "sleep 600\n")  # fmt: skip
    daemon = DaemonProcess(config)
    try:

        def running_job_of(case_id):
            shown = slurm_cluster.run("squeue", "--noheader", "--format=%i|%j|%T")
            for line in shown.splitlines():
                job, name, state = line.split("|")
                if name == f"mqi:{case_id}:a1" and state == "RUNNING":
                    return job
            return None

        job = wait_for(lambda: running_job_of("patient-0"), timeout=60, daemon=daemon)
        slurm_cluster.run("scancel", job)  # an administrator, not the daemon
        found = wait_for(all_ended(config, names[1:]), timeout=120, daemon=daemon)
        attempt_2 = wait_for(lambda: cases(config)["patient-0"]["attempt"] == 2,
                             timeout=60, daemon=daemon)  # fmt: skip
    finally:
        assert daemon.stop() == 0
    assert attempt_2 and {found[n]["state"] for n in names[1:]} == {"completed"}
    starts = {}
    for name in names[1:]:
        trail = mqi_json(config, "history", name)
        starts[name] = next(e["notification_id"] for e in trail
                            if e["event"] == "SubmissionStarted")  # fmt: skip
    assert sorted(starts, key=starts.get) == names[1:]  # they were sent in arrival order
    lost = [e for e in mqi_json(config, "history", "patient-0") if e["event"] == "AttemptAbandoned"]
    assert lost and "killed, but not by us" in lost[0]["reason"]


def test_our_timeout_kills_the_job_with_scancel_and_the_case_fails_as_a_timeout(
    tmp_path, slurm_cluster, login
):
    config = write_config(tmp_path / "site", login, host={
        "name": "cluster", "backend": "slurm", "groups": [], "slurm": SLURM},
        main_loop={"running_case_timeout_hours": 4 / 3600})  # fmt: skip
    drop_case(config.parent / "incoming", "patient-1", "sleep 600\n")
    daemon = DaemonProcess(config)
    try:
        found = wait_for(all_ended(config, ["patient-1"]), timeout=90, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    case = found["patient-1"]
    assert (case["state"], case["failure"]) == ("failed", "timeout")
    (job,) = [line for line in slurm_cluster.run(
        "squeue", "--noheader", "--states=all", "--format=%j|%T").splitlines()
        if line.startswith("mqi:patient-1:")]  # fmt: skip
    assert job.endswith("|CANCELLED")  # killed by our scancel, confirmed by a later poll
    events = [e["event"] for e in mqi_json(config, "history", "patient-1")]
    assert events.index("KillRequested") < events.index("Failed")


def test_a_controller_restarted_under_running_jobs_changes_nothing(tmp_path, slurm_cluster, login):
    """slurmctld stopped (SIGTERM) while jobs run, started again 5 s later: meanwhile the
    polls fail (an outage, nothing changes), the jobs go on and end, each case completes
    with its one job."""
    config = cluster_site(tmp_path / "site", login)
    names = ["patient-1", "patient-2"]
    for name in names:
        drop_case(config.parent / "incoming", name, simulates(batches=4, seconds_per_batch=2))
    daemon = DaemonProcess(config)
    try:
        wait_for(lambda: all(c.get("state") == "running" for c in
                             (cases(config).get(n, {}) for n in names)),
                 timeout=60, daemon=daemon)  # fmt: skip
        slurm_cluster.kill_controller(signal.SIGTERM)
        time.sleep(5)
        down = cases(config)
        slurm_cluster.start_controller()
        found = wait_for(all_ended(config, names), timeout=120, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert all(down[n]["state"] == "running" for n in names)  # the outage changed nothing
    assert {found[n]["state"] for n in names} == {"completed"}
    assert all(len(jobs_named(slurm_cluster, n)) == 1 for n in names)
