"""The Slurm adapter against a real Slurm 22.05 (one node, four fake GPUs) over real
OpenSSH: jobs found by name, final states and exit codes as Slurm tells them, the output
read in one command, a cancelled job ended, housekeeping's forgetting."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mqi_es.adapters.slurm.host import SlurmHost
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.target import ssh_target
from mqi_es.config.schema import HostConfig, SlurmConfig
from mqi_es.core.ids import task_label
from mqi_es.core.outcome import Ok
from mqi_es.core.reactions import Removed
from mqi_es.core.remote import LogTails, RemoteTask, Seen, Unseen
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import Sshd

T = TypeVar("T")
WAIT_SECONDS = 60


@pytest.fixture
def login(slurm_cluster: SlurmCluster, sshd_factory: Callable[..., Sshd]) -> Sshd:
    """The cluster's login node: an sshd whose sessions find the cluster."""
    return sshd_factory(env=slurm_cluster.env)


def cluster_host(ssh: Sshd, remote_command: str, *, timeout: float = 20.0,
                 **slurm: Any) -> SlurmHost:  # fmt: skip
    host = HostConfig(
        name="cluster", host=ssh.host, port=ssh.port, user=ssh.user, key_file=ssh.key_file,
        known_hosts=ssh.known_hosts, remote_command=remote_command, backend="slurm",
        slurm=SlurmConfig(partition="gpu", slots=4, **slurm), command_timeout_seconds=timeout,
    )  # fmt: skip
    target = dataclasses.replace(ssh_target(host), ssh_config=())
    return SlurmHost(host, HostConnection(target), results_globs=("output/*",),
                     timeout_hours=1)  # fmt: skip


def run(host: SlurmHost, scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def closing() -> T:
        try:
            return await scenario()
        finally:
            await host.close()

    return asyncio.run(closing())


async def until(host: SlurmHost, label: str, state: str, wait: float = WAIT_SECONDS) -> RemoteTask:
    loop = asyncio.get_running_loop()
    deadline, last = loop.time() + wait, None
    while loop.time() < deadline:
        last = await host.observe()
        if isinstance(last, Seen):
            found = [t for t in last.snapshot.tasks.values() if t.label == label]
            if found and found[0].state == state:
                return found[0]
        await asyncio.sleep(0.3)
    raise AssertionError(f"{label} not {state} within {wait} s; last: {last}")


async def submitted(host: SlurmHost, case_id: str, slot: str = "slot0") -> tuple[str, int]:
    label = task_label(case_id, 1)
    outcome = await host.submit(slot=slot, label=label, remote_dir=f"~/cases/{case_id}",
                                case_id=case_id, attempt=1)  # fmt: skip
    assert isinstance(outcome, Ok), outcome
    return label, int(outcome.stdout)


def test_a_job_that_exits_2_is_failed_with_its_code_and_its_output_is_read(login):
    host = cluster_host(login, "mkdir -p {case_dir} && cd {case_dir} && "
                        "echo 'Generating particles for (1 of 3 batches) in CPU ..' && "
                        "echo GPU=$CUDA_VISIBLE_DEVICES && sleep 1 && exit 2")  # fmt: skip

    async def scenario():
        await host.connection.run("mkdir -p ~/cases/case-2")
        label, job = await submitted(host, "case-2", "slot2")
        running = await until(host, label, "running")
        ended = await until(host, label, "ended")
        return job, running, ended, await host.log_tails([ended], lines=5)

    job, running, ended, tails = run(host, scenario)
    assert running.id == job and running.slot == "slot2" and running.created_at is not None
    assert (ended.result, ended.exit_code) == ("failed", 2)
    assert ended.start is not None and ended.end is not None and ended.end >= ended.start
    assert isinstance(tails, LogTails)
    progress = "Generating particles for (1 of 3 batches) in CPU .."
    assert tails.by_task[job].splitlines() == [progress, "GPU=0"]


def test_a_job_that_succeeds_and_a_cancelled_one_and_housekeeping_forgets_them(login):
    host = cluster_host(login, "mkdir -p {case_dir} && cd {case_dir} && "
                        "[ {case_id} = case-ok ] && exit 0; sleep 300")  # fmt: skip

    async def scenario():
        await host.connection.run("mkdir -p ~/cases/case-ok ~/cases/case-long")
        ok_label, _ = await submitted(host, "case-ok")
        long_label, _ = await submitted(host, "case-long", "slot1")
        done = await until(host, ok_label, "ended")
        running = await until(host, long_label, "running")
        assert isinstance(await host.cancel(running), Ok)
        killed = await until(host, long_label, "ended")
        removed = await host.remove_tasks([done, killed])
        after = await host.observe()
        return done, killed, removed, after

    done, killed, removed, after = run(host, scenario)
    assert done.result == "succeeded" and done.exit_code is None
    assert killed.result == "killed"
    assert removed == Removed((done.id, killed.id))
    assert isinstance(after, Seen) and after.snapshot.tasks == {}  # forgotten, though listed


def test_only_jobs_named_by_our_labels_are_ours(login, slurm_cluster):
    slurm_cluster.run("sbatch", "--job-name=someone-else", "--wrap=sleep 30")
    host = cluster_host(login, "sleep 30")

    async def scenario():
        await host.connection.run("mkdir -p ~/cases/case-3")
        label, _ = await submitted(host, "case-3")
        return label, await until(host, label, "running")

    label, task = run(host, scenario)
    assert task.label == label


def test_a_job_restarted_by_a_killed_controller_runs_once_and_is_lost(login, slurm_cluster):
    """A controller SIGKILLed under a running job starts it again, same id (Slurm 22.05).
    With --no-requeue the node then finds the duplicate and the job is cancelled (seen here;
    without it, the job ran again from scratch); should a second start get through, the job
    refuses it (its first-start mark). Either way the simulation ran once, and the poll says
    the job ended by others' hands, which the core retries as a new attempt."""
    host = cluster_host(login, "mkdir -p {case_dir} && cd {case_dir} && echo ran >> ~/runs && "
                        "sleep 8")  # fmt: skip

    async def scenario():
        await host.connection.run("mkdir -p ~/cases/case-r")
        label, _ = await submitted(host, "case-r")
        await until(host, label, "running")
        await asyncio.sleep(1)
        await asyncio.to_thread(slurm_cluster.kill_controller)
        await asyncio.to_thread(slurm_cluster.start_controller)
        await asyncio.to_thread(slurm_cluster.wait_idle)
        ended = await until(host, label, "ended")
        runs = await host.connection.run("cat ~/runs")
        return ended, runs

    ended, runs = run(host, scenario)
    assert ended.result in ("killed", "lost"), ended
    assert isinstance(runs, Ok) and runs.stdout.splitlines() == ["ran"]  # never twice


def test_a_hanging_squeue_is_not_seen_and_says_so(slurm_cluster, sshd_factory, tmp_path):
    """The controller is busy and squeue hangs: the poll is unknown (nothing changes), then
    the cluster is seen again once squeue answers."""
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    hang = tmp_path / "hang"
    (wrappers / "squeue").write_text(
        f'#!/bin/sh\n[ -e {hang} ] && sleep 60\nexec /usr/bin/squeue "$@"\n'
    )
    (wrappers / "squeue").chmod(0o755)
    login = sshd_factory(env=slurm_cluster.env, extra_path=[wrappers])
    host = cluster_host(login, "sleep 30", timeout=2.0)

    async def scenario():
        before = await host.observe()
        hang.touch()
        hung = await host.observe()
        hang.unlink()
        return before, hung, await host.observe()

    before, hung, after = run(host, scenario)
    assert isinstance(before, Seen) and isinstance(after, Seen)
    assert isinstance(hung, Unseen) and "timed out" in hung.reason


def squeue_hiding(tmp_path) -> tuple[Path, Path]:
    """A squeue on the login node's PATH that leaves out the jobs whose lines match the
    patterns in the second file (none at first), as if the controller had purged them."""
    wrappers, hidden = tmp_path / "bin", tmp_path / "hidden"
    wrappers.mkdir()
    hidden.write_text("^$\n")
    (wrappers / "squeue").write_text(f'#!/bin/sh\n/usr/bin/squeue "$@" | grep -v -f {hidden}\n'
                                     "exit 0\n")  # fmt: skip
    (wrappers / "squeue").chmod(0o755)
    return wrappers, hidden


@pytest.mark.parametrize("accounting", ["auto", "none"])
def test_a_job_that_left_the_queue_is_read_from_accounting_or_is_missing(
    accounting, slurm_cluster, sshd_factory, tmp_path
):
    """The queue forgets an ended job after MinJobAge (hidden here by a wrapper, as if the
    controller had purged it): with accounting (here Slurm's job completion log, there is
    no slurmdbd) its final state and exit code are read there, as the queue showed the job;
    without, the job is simply not in the snapshot (never "done", never "failed")."""
    wrappers, hidden = squeue_hiding(tmp_path)
    login = sshd_factory(env=slurm_cluster.env, extra_path=[wrappers])
    host = cluster_host(login, "mkdir -p {case_dir} && sleep 2 && exit 3", accounting=accounting)

    async def scenario():
        await host.connection.run("mkdir -p ~/cases/case-gone")
        label, job = await submitted(host, "case-gone", "slot3")
        running = await until(host, label, "running")
        hidden.write_text(f"^{job}|\n")
        while "RUNNING" in await asyncio.to_thread(slurm_cluster.run, "squeue", "-h", "-j",
                                                   str(job), "-t", "all", "-o", "%T"):  # fmt: skip
            await asyncio.sleep(0.3)
        return running, await host.observe()

    running, after = run(host, scenario)
    assert isinstance(after, Seen)
    if accounting == "none":
        assert running.id not in after.snapshot.tasks  # missing: the core's grace decides
        return
    ended = after.snapshot.tasks[running.id]
    assert (ended.state, ended.result, ended.exit_code) == ("ended", "failed", 3)
    assert (ended.slot, ended.created_at, ended.label) == (running.slot, running.created_at,
                                                           running.label)  # fmt: skip


def test_slurms_own_time_limit_ends_a_job_as_timed_out(login):
    """Our kill normally comes first (Slurm's limit is ours plus a margin); when it did not,
    Slurm's TIMEOUT is a timeout of the case, not a loss. Slurm's smallest limit is a
    minute, enforced within about half a minute more."""
    host = cluster_host(login, "sleep 600", time_limit_minutes=1)

    async def scenario():
        label, _ = await submitted(host, "case-long")
        return await until(host, label, "ended", wait=180)

    ended = run(host, scenario)
    assert (ended.result, ended.detail) == ("timed_out", "Slurm TIMEOUT (TimeLimit)")


def test_after_a_daemon_restart_a_job_that_left_the_queue_is_read_from_slurmdbd(
    accounted_slurm_cluster, sshd_factory, tmp_path
):
    """The daemon was down while its job ended and left the queue: the next daemon knows the
    job by its output file, and slurmdbd tells how it ended, with the submission time the
    queue had shown (so the core finds it as the attempt's own task)."""
    wrappers, hidden = squeue_hiding(tmp_path)
    cluster = accounted_slurm_cluster
    login = sshd_factory(env=cluster.env, extra_path=[wrappers])
    first = cluster_host(login, "mkdir -p {case_dir} && sleep 1 && exit 4", accounting="sacct")

    async def before():
        await first.connection.run("mkdir -p ~/cases/case-down")
        label, job = await submitted(first, "case-down")
        return job, await until(first, label, "running")

    job, running = run(first, before)
    while "RUNNING" in cluster.run("squeue", "-h", "-j", str(job), "-t", "all", "-o", "%T"):
        time.sleep(0.3)
    hidden.write_text(f"^{job}|\n")  # purged from the queue while no daemon looked
    second = cluster_host(login, "true", accounting="sacct")  # a new daemon: no memory

    async def after():
        deadline = time.monotonic() + 30
        while True:  # slurmdbd records a job's end a moment after it
            seen = await second.observe()
            if job in seen.snapshot.tasks or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.5)

    seen = run(second, after)
    ended = seen.snapshot.tasks[job]
    assert (ended.state, ended.result, ended.exit_code) == ("ended", "failed", 4)
    assert (ended.label, ended.created_at) == (running.label, running.created_at)
