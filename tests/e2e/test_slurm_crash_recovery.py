"""Kill the daemon at every step of a case's life on a real Slurm cluster, restart it, and
check that nothing is lost or run twice: one Slurm job per attempt (found by its name
after a crash between sbatch and its record), the case completed with its results, every
slot of ours free again."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from mqi_es.adapters.local.failpoints import EXIT_CODE, STEPS
from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, mqi_json, wait_for
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import Sshd, started_sshd


@pytest.fixture(scope="module")
def shared_login(shared_slurm_cluster: SlurmCluster, tmp_path_factory) -> Iterator[Sshd]:
    server = started_sshd(tmp_path_factory.mktemp("login"), env=shared_slurm_cluster.env)
    yield server
    server.stop()


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_on_slurm_is_recovered_without_a_second_job(
    step, tmp_path: Path, shared_slurm_cluster, shared_login
):
    case_id = "crash-" + step.replace(":", "-").replace("_", "-").lower()
    config = write_config(tmp_path / "site", shared_login, host={
        "name": "cluster", "backend": "slurm", "groups": [],
        "slurm": {"partition": "gpu", "slots": 2, "gres": "gpu:1"}})  # fmt: skip
    drop_case(config.parent / "incoming", case_id, "sleep 2\n" + SUCCEEDS)

    crashing = DaemonProcess(config, failpoint=step)
    assert crashing.wait(timeout=90) == EXIT_CODE, crashing.output()
    crashing.stop()
    restarted = DaemonProcess(config)
    try:
        found = wait_for(all_ended(config, [case_id]), timeout=120, daemon=restarted)
    finally:
        assert restarted.stop() == 0
    case = found[case_id]
    assert case["state"] == "completed", case
    fetched = sorted(p.name for p in (Path(case["results_dir"]) / "output").iterdir())
    assert fetched == ["RD_beam1.dcm", "RD_beam2.dcm"]
    shown = shared_slurm_cluster.run("squeue", "--noheader", "--states=all", "--format=%j")
    jobs = [name for name in shown.splitlines() if name.startswith(f"mqi:{case_id}:")]
    assert len(jobs) == len(set(jobs)) <= case["attempt"], jobs  # one job per attempt at most
    assert all(g["state"] == "free" for g in mqi_json(config, "gpus"))
