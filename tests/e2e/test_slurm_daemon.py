"""A real `mqi run` on a real Slurm cluster (one node, four fake GPUs) through its login
node (real OpenSSH), alone and beside a pueue node: each case runs once as a Slurm job,
its results come back, a failure keeps its exit code and output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mqi_es.sandbox.site import EXITS_WITH_2, SUCCEEDS, drop_case, simulates, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, mqi_json, wait_for
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
