"""Reading Slurm's answers, against what a real Slurm 22.05.8 printed (tests/data/slurm)."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqi_es.adapters.slurm.commands import build_submit
from mqi_es.adapters.slurm.host import SlurmHost
from mqi_es.adapters.slurm.parse import (
    SlurmOutputError,
    parse_observe,
    parse_sacct,
    parse_submit,
    parse_tails,
    to_task,
)
from mqi_es.config.schema import HostConfig, SlurmConfig
from mqi_es.core.outcome import Ok, RemoteFailure

DATA = Path(__file__).parents[1] / "data" / "slurm"
OBSERVED = (DATA / "observe-22.05.8.txt").read_text()


def tasks():
    reading = parse_observe(OBSERVED)
    return {job.name: to_task(job) for job in reading.jobs.values()}


def test_a_real_poll_reads_into_neutral_tasks():
    reading = parse_observe(OBSERVED)
    assert reading.node_time == datetime.fromtimestamp(1796424730.774052, UTC)
    assert reading.logs == {1, 2, 3, 4, 5, 6} and reading.forgotten == {1}
    assert sorted(reading.jobs) == [1, 2, 3, 4, 5, 6, 7]  # 8 is someone else's: no mark of ours
    shown = tasks()
    ok, two, killed = shown["mqi:case-ok:a1"], shown["mqi:case-two:a1"], shown["mqi:case-sig:a1"]
    assert (ok.state, ok.result, ok.exit_code, ok.slot) == ("ended", "succeeded", None, "slot0")
    assert (two.result, two.exit_code) == ("failed", 2)  # raw wait status 512
    assert (killed.result, killed.exit_code) == ("failed", 137)  # signal 9
    assert killed.detail == "Slurm FAILED (JobLaunchFailure)" and killed.node == "vm"
    cancelled = shown["mqi:case-wait:a2"]
    assert (cancelled.state, cancelled.result) == ("ended", "killed")
    running = shown["mqi:case-long:a1"]
    assert (running.state, running.result, running.end) == ("running", None, None)
    assert running.created_at == datetime(2026, 12, 4, 22, 52, 4, tzinfo=UTC)
    assert running.start == datetime(2026, 12, 4, 22, 52, 5, tzinfo=UTC)
    assert shown["mqi:case|pipe:a1"].state == "waiting"  # a '|' in a name reads whole


@pytest.mark.parametrize(
    ("state", "neutral"),
    [("PENDING", ("waiting", None)), ("REQUEUED", ("waiting", None)),
     ("COMPLETING", ("running", None)), ("SUSPENDED", ("suspended", None)),
     ("TIMEOUT", ("ended", "timed_out")), ("DEADLINE", ("ended", "timed_out")),
     ("OUT_OF_MEMORY", ("ended", "failed")), ("NODE_FAIL", ("ended", "lost")),
     ("PREEMPTED", ("ended", "lost")), ("BOOT_FAIL", ("ended", "lost")),
     ("SOMETHING_NEW", ("waiting", None))],
)  # fmt: skip
def test_every_slurm_state_has_a_neutral_one(state, neutral):
    line = OBSERVED.splitlines()[3].split("|")  # the COMPLETED job's line, its state changed
    line[1] = state
    text = OBSERVED.replace(OBSERVED.splitlines()[3], "|".join(line))
    task = next(t for t in (to_task(j) for j in parse_observe(text).jobs.values())
                if t and t.label == "mqi:case-ok:a1")  # fmt: skip
    assert (task.state, task.result) == neutral


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mqi-clock 1\n",
        OBSERVED.replace("=== logs", ""),
        OBSERVED.replace("|None|", "|", 1),
        OBSERVED.replace("COMPLETED", "COMPLETED;rm"),
        "garbage\n=== squeue\n=== logs\n",
    ],
)
def test_an_unreadable_poll_is_an_error_never_a_state(text):
    with pytest.raises(SlurmOutputError):
        parse_observe(text)


def test_sbatch_parsable_gives_the_job_id():
    assert parse_submit((DATA / "sbatch-parsable-22.05.8.txt").read_text()) == 8
    assert parse_submit("41;cluster2\n") == 41
    for text in ("", "Submitted batch job 12\n", "sbatch: error: Batch job submission failed"):
        with pytest.raises(SlurmOutputError):
            parse_submit(text)


class Cluster:
    """A connection that answers the adapter's commands with real outputs of Slurm 22.05."""

    def __init__(self, poll: str, accounting: list[object]) -> None:
        self.poll, self.accounting, self.asked = poll, accounting, []

    async def run(self, command: str, **_: object) -> object:
        if "sacct" in command:
            self.asked.append(command)
            return self.accounting.pop(0)
        return Ok(self.poll)


def test_a_job_that_left_the_queue_is_asked_of_again_until_accounting_tells(tmp_path):
    """Accounting fails once (slurmdbd down): the job is asked of again at the next poll,
    never dropped; after a restart of the daemon its output file is what tells of it."""
    queue_forgot = OBSERVED.replace(OBSERVED.splitlines()[4] + "\n", "")  # job 2 purged
    refused = RemoteFailure(1, "sacct: error: Problem talking to the database")
    told = Ok((DATA / "sacct-completion-log-22.05.8.txt").read_text())
    cluster = Cluster(queue_forgot, [refused, told])
    host = SlurmHost(
        HostConfig(name="c", host="login", remote_command="run", backend="slurm",
                   slurm=SlurmConfig(partition="gpu")),
        cluster, results_globs=("*",), timeout_hours=1,  # type: ignore[arg-type]
    )  # fmt: skip

    async def polls():
        return [await host.observe() for _ in range(3)]

    first, second, third = asyncio.run(polls())
    assert 2 not in first.snapshot.tasks  # not told yet: missing, never a guess
    ended = second.snapshot.tasks[2]
    assert (ended.state, ended.result, ended.exit_code) == ("ended", "failed", 2)
    assert third.snapshot.tasks[2] == ended  # told once, kept while its output is there
    assert len(cluster.asked) == 2 and all("--jobs=2" in c for c in cluster.asked)


def test_the_completion_log_reads_exit_codes_and_signals():
    jobs = parse_sacct((DATA / "sacct-completion-log-22.05.8.txt").read_text())
    assert sorted(jobs) == [1, 2, 3]
    assert to_task(jobs[1]).result == "succeeded"
    assert (to_task(jobs[2]).result, to_task(jobs[2]).exit_code) == ("failed", 2)
    assert (to_task(jobs[3]).result, to_task(jobs[3]).exit_code) == ("failed", 137)


def test_sacct_skips_steps_and_keeps_a_pipe_in_a_name():
    text = ("=== sacct\n12|CANCELLED by 0|0:15|2026-12-04T10:00:00|2026-12-04T10:00:01|"
            "2026-12-04T10:00:02|vm|mqi:a|b:a1\n12.batch|CANCELLED|0:15|2026-12-04T10:00:01|"
            "2026-12-04T10:00:01|2026-12-04T10:00:02|vm|batch\n")  # fmt: skip
    jobs = parse_sacct(text)
    assert list(jobs) == [12] and jobs[12].name == "mqi:a|b:a1"
    assert to_task(jobs[12]).result == "killed"


def test_tails_are_read_per_job_and_no_output_passes_for_another_jobs():
    mark = "=== mqi 0123abcd"
    text = f"{mark} 4\nline 1\n=== 5\n{mark} 5 missing\n{mark} 6\n=== mqi 0123abce 4\n"
    assert parse_tails(text, mark) == {4: "line 1\n=== 5", 6: "=== mqi 0123abce 4"}


def test_everything_from_the_case_reaches_sbatch_quoted():
    command = build_submit(
        label="mqi:case $(rm):a1", slot="slot0", remote_dir="~/mqi_cases/case $(rm)/attempt-1",
        remote_base_dir="~/mqi_cases", task_command="tps_env 'x'; echo $HOME",
        partition="gpu", gres="gpu:1", time_limit_minutes=75, options=("--qos=clinical",),
        env={"MODE": "a b;c"},
    )  # fmt: skip
    argv = shlex.split(command.partition(" && ")[2])  # the words sbatch gets
    assert argv[:4] == ["sbatch", "--qos=clinical", "--parsable", "--no-requeue"]  # ours last
    assert "--job-name=mqi:case $(rm):a1" in argv and "--comment=mqi-slot=slot0" in argv
    assert "--chdir=$HOME/mqi_cases/case $(rm)/attempt-1" in argv  # $HOME: by the login shell
    assert "--output=$HOME/mqi_cases/.mqi-slurm/%j.out" in argv
    assert {"--time=75", "--partition=gpu", "--qos=clinical", "--gres=gpu:1"} <= set(argv)
    assert argv[-1].startswith("--wrap=if ! mkdir ")
    assert argv[-1].endswith("; export MODE='a b;c'; tps_env 'x'; echo $HOME")


def test_a_job_started_a_second_time_refuses_to_run_and_says_so(tmp_path):
    """What a controller restarted under a running job does (Slurm 22.05 starts it again
    from scratch under the same id): the job's own first words let it run once only."""
    (tmp_path / "mqi_cases").mkdir()
    command = build_submit(
        label="mqi:c:a1", slot="slot0", remote_dir="~/mqi_cases/c/attempt-1",
        remote_base_dir="~/mqi_cases", task_command="echo ran >> ~/runs", partition="gpu",
        gres="", time_limit_minutes=5,
    )  # fmt: skip
    wrapped = shlex.split(command.partition(" && ")[2])[-1].removeprefix("--wrap=")
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "SLURM_JOB_ID": "5"}
    (tmp_path / "mqi_cases" / ".mqi-slurm").mkdir()
    first = subprocess.run(["sh", "-c", wrapped], env=env, capture_output=True, text=True)
    again = subprocess.run(["sh", "-c", wrapped], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and (tmp_path / "runs").read_text() == "ran\n"
    assert again.returncode == 75 and "runs only once" in again.stderr
    assert (tmp_path / "mqi_cases" / ".mqi-slurm" / "5.refused").exists()
    listing = "mqi-clock 1\n=== squeue\n=== logs\n5.out\n5.started\n5.refused\n"
    assert parse_observe(listing).refused == {5} and parse_observe(listing).logs == {5}


def test_a_cases_own_longer_timeout_reaches_sbatch():
    sent = []

    class Login:
        async def run(self, command: str, **_: object) -> object:
            sent.append(command)
            return Ok("12\n")

    host = SlurmHost(
        HostConfig(name="c", host="login", remote_command="run", backend="slurm",
                   slurm=SlurmConfig(partition="gpu")),
        Login(), results_globs=("*",), timeout_hours=1,  # type: ignore[arg-type]
    )  # fmt: skip

    async def submit(hours):
        return await host.submit(slot="slot0", label="mqi:c:a1", remote_dir="~/c",
                                 case_id="c", attempt=1, timeout_hours=hours)  # fmt: skip

    assert asyncio.run(submit(None)) == Ok("12") and "--time=75" in sent[-1]
    asyncio.run(submit(3))
    assert "--time=195" in sent[-1]  # 3 h of its own and our margin: our kill comes first
    asyncio.run(submit(0.5))
    assert "--time=75" in sent[-1]  # never below the default
