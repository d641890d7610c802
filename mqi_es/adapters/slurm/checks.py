"""`mqi doctor`'s checks of a Slurm cluster: SSH, that `sinfo` and `squeue` answer, that the
partition exists, is up and can take our gres and time limit, whether accounting answers
(how final states will be read), MinJobAge (how long ended jobs stay in the queue), the
remote folder and the clock."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mqi_es.adapters.ssh.checks import first_line, remote_folder_finding, ssh_finding, why
from mqi_es.core.checks import Finding, Verdict, clock_finding, skipped
from mqi_es.core.outcome import Ok
from mqi_es.core.remote import Seen
from mqi_es.core.shell import quote

if TYPE_CHECKING:
    from mqi_es.adapters.slurm.host import SlurmHost

MIN_JOB_AGE_WANTED = 300  # seconds: Slurm's default, several polls to read a final state


async def cluster_findings(cluster: SlurmHost) -> list[Finding]:
    host = cluster.host_config
    reached = await ssh_finding(host, cluster.connection)
    if reached.verdict is Verdict.FAIL:
        later = ("squeue", "partition", "accounting", "MinJobAge", "remote folder", "clock")
        return [reached, *skipped(host.name, later, "needs SSH")]
    observation = await cluster.observe()
    name = host.name
    queue = (Finding(f"{name}: squeue", Verdict.OK, "`squeue --me` answers")
             if isinstance(observation, Seen)
             else Finding(f"{name}: squeue", Verdict.FAIL, f"not seen: {observation.reason}",
                          "check that slurm-client is installed on the login node and that "
                          "slurmctld answers (`sinfo`)"))  # fmt: skip
    return [
        reached,
        queue,
        await _partition(cluster),
        await _accounting(cluster),
        await _min_job_age(cluster),
        await remote_folder_finding(host, cluster.connection),
        clock_finding(name, observation, needs="`squeue`"),
    ]


async def _partition(cluster: SlurmHost) -> Finding:
    settings, check = cluster.settings, f"{cluster.name}: partition"
    command = f"scontrol show partition {quote(settings.partition)} --oneliner"
    outcome = await cluster.connection.run(command)
    if not isinstance(outcome, Ok):
        return Finding(check, Verdict.FAIL,
                       f"partition {settings.partition} not found: {why(outcome)}",
                       "set slurm.partition to one `sinfo` lists")  # fmt: skip
    fields = dict(re.findall(r"(\w+)=(\S*)", outcome.stdout))
    if fields.get("State") != "UP":
        return Finding(check, Verdict.FAIL, f"partition {settings.partition} is "
                       f"{fields.get('State', 'in no known state')}")  # fmt: skip
    limit = _minutes(fields.get("MaxTime", "UNLIMITED"))
    if limit is not None and limit < cluster.time_limit:
        return Finding(check, Verdict.FAIL,
                       f"its MaxTime ({fields['MaxTime']}) is shorter than our jobs' time limit "
                       f"({cluster.time_limit} min)",
                       "lower main_loop.running_case_timeout_hours, or set "
                       "slurm.time_limit_minutes")  # fmt: skip
    if settings.gres:
        gres = await cluster.connection.run(
            f"sinfo --noheader --partition={quote(settings.partition)} --format=%G"
        )
        kind = settings.gres.split(":")[0]
        if not isinstance(gres, Ok) or kind not in gres.stdout:
            said = first_line(gres.stdout) if isinstance(gres, Ok) else why(gres)
            return Finding(check, Verdict.FAIL,
                           f"no node of partition {settings.partition} offers gres {kind} "
                           f"(sinfo: {said})",
                           "set slurm.gres to what the partition's nodes have")  # fmt: skip
    return Finding(check, Verdict.OK, f"partition {settings.partition} is up and takes "
                   f"{settings.gres or 'no gres'} for {cluster.time_limit} min")  # fmt: skip


async def _accounting(cluster: SlurmHost) -> Finding:
    check = f"{cluster.name}: accounting"
    outcome = await cluster.connection.run("sacct --noheader --allocations --starttime=now-1hours "
                                           "--format=JobID --parsable2")  # fmt: skip
    works = isinstance(outcome, Ok)
    wanted = cluster.settings.accounting
    if works:
        return Finding(check, Verdict.OK, "sacct answers: final states are read from it once a "
                       "job has left the queue")  # fmt: skip
    if wanted == "sacct":
        return Finding(check, Verdict.FAIL, f"sacct does not answer: {why(outcome)}",
                       "set up slurmdbd, or set slurm.accounting: auto or none")  # fmt: skip
    completion = await cluster.connection.run("sacct --completion --noheader --parsable2 "
                                              "--format=JobID")  # fmt: skip
    if wanted == "auto" and isinstance(completion, Ok):
        return Finding(check, Verdict.WARN,
                       "no slurmdbd: the final state of a job that left the queue is read "
                       "from Slurm's job completion log (sacct --completion)",
                       "set up slurmdbd for full accounting")  # fmt: skip
    return Finding(check, Verdict.WARN,
                   f"no accounting ({why(outcome)}): a job is followed while the queue lists "
                   "it (MinJobAge); one that left it unseen is lost after its grace",
                   "set up slurmdbd, or keep MinJobAge well above the poll interval")  # fmt: skip


async def _min_job_age(cluster: SlurmHost) -> Finding:
    check = f"{cluster.name}: MinJobAge"
    outcome = await cluster.connection.run("scontrol show config")
    found = re.search(r"^MinJobAge\s*=\s*(\d+)", outcome.stdout, re.M) if isinstance(
        outcome, Ok) else None  # fmt: skip
    if found is None:
        return Finding(check, Verdict.WARN, f"not read: {why(outcome)}")
    seconds = int(found[1])
    if seconds < MIN_JOB_AGE_WANTED:
        return Finding(check, Verdict.WARN,
                       f"{seconds} s: an ended job leaves the queue before a few polls can "
                       "read its final state", "raise MinJobAge, or set up accounting")  # fmt: skip
    return Finding(check, Verdict.OK, f"{seconds} s: ended jobs stay in the queue that long")


def _minutes(text: str) -> int | None:
    """Slurm's ``[days-]hours:minutes:seconds`` (or UNLIMITED) in minutes."""
    found = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)", text)
    if found is None:
        return None
    days, hours, minutes, _ = (int(g or 0) for g in found.groups())
    return (days * 24 + hours) * 60 + minutes
