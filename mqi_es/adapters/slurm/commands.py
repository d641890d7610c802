"""The command lines we send a Slurm login node over SSH. Pure.

Every value that reaches the remote shell is single-quoted (``mqi_es.core.shell``); the
task command reaches sbatch as one ``--wrap`` word, run by Slurm through ``sh -c``, as
pueue runs it. Times are asked for in UTC (``TZ=UTC``): Slurm prints local times without
a zone. ``HostConnection.run`` bounds how long each command may take.

A job of ours is named by our label (chosen before any submission, so a lost ``sbatch``
reply is found by name, never submitted twice) and carries its slot in its comment. Its
output goes to ``<remote_base_dir>/.mqi-slurm/<job id>.out``, where the progress and the
failure tail are read; removing that file is what "removing an ended task" means here
(Slurm forgets ended jobs by itself, after MinJobAge).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mqi_es.adapters.ssh.node_clock import CLOCK_COMMAND
from mqi_es.core.shell import quote, remote_path

LOG_FOLDER = ".mqi-slurm"
SLOT_MARK = "mqi-slot="  # the comment of a job of ours: mqi-slot=<slot>
SQUEUE_MARK = "=== squeue"
LOGS_MARK = "=== logs"
SACCT_MARK = "=== sacct"
# squeue's fields, '|'-separated, whole (no width): the job, its state and the raw wait
# status (exit code << 8 | signal), its times, where it ran, why it waits or ended; the free
# texts last (a name may hold a '|': the comment of ours never does, so it ends at the first).
SQUEUE_FIELDS = ("JobID", "State", "Exit_Code", "SubmitTime", "StartTime", "EndTime",
                 "NodeList", "Reason", "Comment", "Name")  # fmt: skip
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Submit", "Start", "End", "NodeList", "JobName")
NO_REQUEUE = "--no-requeue"
# A controller killed while a job runs starts it again from scratch, under the same id, even
# with --no-requeue (seen on 22.05): each job marks its first start (mkdir is atomic) and
# refuses a second one, leaving a mark the poll sees. The attempt is then lost, not run twice.
STARTED_SUFFIX, REFUSED_SUFFIX = ".started", ".refused"
FORGOTTEN_SUFFIX = ".forgotten"  # housekeeping removed what was left of an ended job
RERUN_REFUSED_EXIT = 75


def log_folder(remote_base_dir: str) -> str:
    return remote_path(remote_base_dir, LOG_FOLDER)


def job_log(remote_base_dir: str, job_id: int | str) -> str:
    return remote_path(remote_base_dir, LOG_FOLDER, f"{job_id}.out")


def build_observe(remote_base_dir: str) -> str:
    """One round trip: the node's clock, every job of ours Slurm still remembers (``-t all``:
    ended ones too), and the output files of ours that are left."""
    fields = ",".join(f"{name}:|" for name in SQUEUE_FIELDS[:-1]) + f",{SQUEUE_FIELDS[-1]}:"
    squeue = f"TZ=UTC squeue --me --noheader --states=all --Format={quote(fields)}"
    folder = log_folder(remote_base_dir)
    logs = f"{{ [ ! -d {folder} ] || ls -1 {folder}; }}"  # an unreadable folder fails the poll
    return (f"{CLOCK_COMMAND} && echo {quote(SQUEUE_MARK)} && {squeue} && "
            f"echo {quote(LOGS_MARK)} && {logs}")  # fmt: skip


def build_sacct(job_ids: Iterable[int], *, completion_log: bool) -> str:
    """The final state of jobs Slurm's queue forgot, from its accounting (slurmdbd), or,
    with ``completion_log``, from its job completion log where there is no slurmdbd
    (``sacct -c``, jobcomp/filetxt). Text form: the JSON form misreports exit codes."""
    ids = ",".join(str(int(i)) for i in job_ids)
    words = (f"--noheader --parsable2 --allocations --jobs={ids} "
             f"--format={','.join(SACCT_FIELDS)}")  # fmt: skip
    ask = f"TZ=UTC sacct {words}"
    if completion_log:
        ask = f"{{ {ask} 2>/dev/null || TZ=UTC sacct --completion {words}; }}"
    return f"echo {quote(SACCT_MARK)} && {ask}"


def build_submit(
    *,
    label: str,
    slot: str,
    remote_dir: str,
    remote_base_dir: str,
    task_command: str,
    partition: str,
    gres: str,
    time_limit_minutes: int,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> str:
    """``sbatch --parsable`` of the task command in its case folder; prints the job id."""
    if not label or not task_command:
        raise ValueError("label and task_command must not be empty")
    words = [  # the configured options first: where an option comes twice, sbatch takes the last
        "sbatch", *(quote(option) for option in options), "--parsable", NO_REQUEUE,
        "--job-name=" + quote(label), "--comment=" + quote(SLOT_MARK + slot),
        "--chdir=" + remote_path(remote_dir), "--output=" + job_log(remote_base_dir, "%j"),
        f"--time={int(time_limit_minutes)}", "--partition=" + quote(partition),
    ]  # fmt: skip
    if gres:
        words.append("--gres=" + quote(gres))
    # The job gets the submitting shell's environment (sbatch's default) and ``env``, set
    # by the wrapped command itself: sbatch's own --export splits values at commas.
    exports = "".join(f"export {name}={quote(value)}; " for name, value in (env or {}).items())
    words.append("--wrap=" + quote(_run_once(remote_base_dir) + exports + task_command))
    return f"mkdir -p {log_folder(remote_base_dir)} && " + " ".join(words)


def _run_once(remote_base_dir: str) -> str:
    """The job's first words: run only at its first start (see ``STARTED_SUFFIX``)."""
    mark = log_folder(remote_base_dir) + '/"$SLURM_JOB_ID"'
    return (f"if ! mkdir {mark}{STARTED_SUFFIX} 2>/dev/null; then touch {mark}{REFUSED_SUFFIX}; "
            "echo \"mqi: Slurm started job $SLURM_JOB_ID again; it runs only once\" >&2; "
            f"exit {RERUN_REFUSED_EXIT}; fi; ")  # fmt: skip


def build_cancel(job_id: int) -> str:
    """``scancel``: Slurm signals the job; a later poll confirms it ended."""
    return f"scancel {int(job_id)}"


def build_tails(remote_base_dir: str, job_ids: Iterable[int], lines: int, mark: str) -> str:
    """The last ``lines`` of each job's output, each after a ``<mark> <id>`` line (``mark``:
    chosen at random per command, so that no output can pass for another job's), or
    ``<mark> <id> missing`` when the job has no output file."""
    parts = []
    for i in job_ids:
        path, head = job_log(remote_base_dir, i), quote(f"{mark} {int(i)}")
        parts.append(f"if [ -e {path} ]; then echo {head}; tail -n {int(lines)} {path}; "
                     f"else echo {head}' missing'; fi")  # fmt: skip
    return "; ".join(parts)


def build_forget(remote_base_dir: str, job_ids: Iterable[int]) -> str:
    """Remove what is left of ended jobs on the cluster (their output and marks), leaving
    a mark that they were removed: the queue may list them a while longer."""
    ids = [int(i) for i in job_ids]
    files = " ".join(
        remote_path(remote_base_dir, LOG_FOLDER, f"{i}{suffix}")
        for i in ids for suffix in (".out", STARTED_SUFFIX, REFUSED_SUFFIX)
    )  # fmt: skip
    marks = " ".join(
        remote_path(remote_base_dir, LOG_FOLDER, f"{i}{FORGOTTEN_SUFFIX}") for i in ids
    )
    return f"rm -rf -- {files} && touch -- {marks}"
