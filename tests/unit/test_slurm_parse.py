"""Reading Slurm's answers, against what a real Slurm 22.05.8 printed (tests/data/slurm)."""

from __future__ import annotations

import os
import shlex
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mqi_es.adapters.slurm.commands import build_submit
from mqi_es.adapters.slurm.parse import (
    SlurmOutputError,
    parse_observe,
    parse_sacct,
    parse_submit,
    parse_tails,
    to_task,
)

DATA = Path(__file__).parents[1] / "data" / "slurm"
OBSERVED = (DATA / "observe-22.05.8.txt").read_text()


def tasks():
    reading = parse_observe(OBSERVED)
    return {job.name: to_task(job) for job in reading.jobs.values()}


def test_a_real_poll_reads_into_neutral_tasks():
    reading = parse_observe(OBSERVED)
    assert reading.node_time == datetime.fromtimestamp(1796421704.702087, UTC)
    assert reading.logs == frozenset()
    shown = tasks()
    assert shown["someone-else"] is None  # not named by one of our labels
    ok, two, killed = shown["mqi:case-ok:a1"], shown["mqi:case-two:a1"], shown["mqi:case-sig:a1"]
    assert (ok.state, ok.result, ok.exit_code, ok.slot) == ("ended", "succeeded", None, "slot0")
    assert (two.result, two.exit_code) == ("failed", 2)  # raw wait status 512
    assert (killed.result, killed.exit_code) == ("failed", 137)  # signal 9
    assert killed.detail == "Slurm FAILED (JobLaunchFailure)"
    cancelled = shown["mqi:case-wait:a2"]
    assert (cancelled.state, cancelled.result) == ("ended", "killed")
    running = shown["mqi:case-long:a1"]
    assert (running.state, running.result, running.end) == ("running", None, None)
    assert running.created_at == datetime(2026, 12, 4, 22, 1, 38, tzinfo=UTC)
    assert running.start == datetime(2026, 12, 4, 22, 1, 40, tzinfo=UTC)


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
    line[2] = state
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
        OBSERVED.replace("|None\n", "\n", 1),
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


def test_without_accounting_sacct_refuses_and_says_why():
    said = (DATA / "sacct-no-accounting-22.05.8.txt").read_text()
    assert said.startswith("exit 1") and "accounting storage is disabled" in said


def test_sacct_text_reads_exit_codes_and_skips_steps():
    text = ("=== sacct\n12|mqi:c:a1|FAILED|2:0|2026-12-04T10:00:00|2026-12-04T10:00:01|"
            "2026-12-04T10:00:09|vm\n12.batch|batch|FAILED|2:0|2026-12-04T10:00:01|"
            "2026-12-04T10:00:01|2026-12-04T10:00:09|vm\n13|mqi:d:a1|CANCELLED by 0|0:15|"
            "2026-12-04T10:00:00|2026-12-04T10:00:01|2026-12-04T10:00:02|vm\n")  # fmt: skip
    jobs = parse_sacct(text)
    assert sorted(jobs) == [12, 13]
    assert (to_task(jobs[12]).result, to_task(jobs[12]).exit_code) == ("failed", 2)
    assert to_task(jobs[13]).result == "killed"


def test_tails_are_read_per_job():
    assert parse_tails("=== 4\nline 1\nline 2\n=== 5\n=== 6\nonly\n") == {
        4: "line 1\nline 2",
        5: "",
        6: "only",
    }


def test_everything_from_the_case_reaches_sbatch_quoted():
    command = build_submit(
        label="mqi:case $(rm):a1", slot="slot0", remote_dir="~/mqi_cases/case $(rm)/attempt-1",
        remote_base_dir="~/mqi_cases", task_command="tps_env 'x'; echo $HOME",
        partition="gpu", gres="gpu:1", time_limit_minutes=75, options=("--qos=clinical",),
        env={"MODE": "a b;c"},
    )  # fmt: skip
    argv = shlex.split(command.partition(" && ")[2])  # the words sbatch gets
    assert argv[:3] == ["sbatch", "--parsable", "--no-requeue"]
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
