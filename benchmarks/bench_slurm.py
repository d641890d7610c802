"""The Slurm backend beside the pueue sandbox, in one run: orchestration throughput and
submit-to-running latency through a real `mqi run`, and the poll's cost with 1,000 ended
jobs in Slurm's memory.

    .venv/bin/python benchmarks/bench_slurm.py [--cases 40] [--finished 1000]

Needs root and Debian's slurmctld, slurmd and munge (as the tests): a real one-node Slurm
22.05 with four fake GPUs (``tests/fixtures/slurm.py``) reached through a real OpenSSH
login node, and the sandbox node (pueue stand-in) with four GPU groups. ``--cases``
zero-time cases are dropped at once for each; the clock runs from the drop to the last
completion. Latency per case: from its upload recorded to its task seen running (the
daemon polls every 0.5 s). Poll cost: one ``observe()`` of the cluster (wall time, bytes,
parse CPU) with 10 ended jobs, then with ``--finished`` more in ``squeue -t all``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mqi_es.adapters.backends import remote_host, slots_of
from mqi_es.adapters.slurm.host import SlurmHost
from mqi_es.adapters.slurm.parse import parse_observe
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.target import ssh_target
from mqi_es.app.ports import RemoteHost
from mqi_es.config.loader import load_config
from mqi_es.core.ids import task_label
from mqi_es.core.outcome import Ok
from mqi_es.core.remote import Seen
from mqi_es.sandbox import ThreadedSandboxNode
from mqi_es.sandbox.site import SUCCEEDS, drop_case, write_config
from tests.e2e.daemon_harness import DaemonProcess, all_ended, mqi_json, wait_for
from tests.fixtures.slurm import SlurmCluster
from tests.fixtures.sshd import Sshd

GROUPS = ("gpu0", "gpu1", "gpu2", "gpu3")


def run_cases(config: Path, cases: int) -> tuple[float, list[float]]:
    """Cases per minute, and each case's seconds from its upload recorded to its task's
    end seen (a zero-time task is seldom seen running: it ends between two polls)."""
    names = [f"bench-{i:03d}" for i in range(cases)]
    daemon = DaemonProcess(config)
    try:
        wait_for(lambda: mqi_json(config, "status")["last_cycle_at"], timeout=60, daemon=daemon)
        started = time.monotonic()
        for name in names:
            drop_case(config.parent / "incoming", name, SUCCEEDS)
        wait_for(all_ended(config, names), timeout=600, daemon=daemon, interval=0.2)
        elapsed = time.monotonic() - started
    finally:
        daemon.stop()
    latencies = []
    for name in names:
        trail = {e["event"]: datetime.fromisoformat(e["time"])
                 for e in mqi_json(config, "history", name)}  # fmt: skip
        if "Uploaded" in trail and "RemoteSucceeded" in trail:
            latencies.append((trail["RemoteSucceeded"] - trail["Uploaded"]).total_seconds())
    return cases / elapsed * 60, latencies


async def to_running(host: RemoteHost, slot: str, samples: int = 8) -> list[float]:
    """Seconds from a submission to its task first seen running (polled every 50 ms)."""
    spent = []
    try:
        for i in range(samples):
            label = task_label(f"latency-{i}", 1)
            started = time.perf_counter()
            await host.submit(slot=slot, label=label, remote_dir="~", case_id=f"latency-{i}",
                              attempt=1)  # fmt: skip
            task = None
            while task is None:
                seen = await host.observe()
                if isinstance(seen, Seen):
                    task = next((t for t in seen.snapshot.tasks.values()
                                 if t.label == label and t.state == "running"), None)  # fmt: skip
                if task is None:
                    await asyncio.sleep(0.05)
            spent.append(time.perf_counter() - started)
            await host.cancel(task)
    finally:
        await host.close()
    return spent


def latency(config: Path) -> list[float]:
    loaded = load_config(config).config
    (entry,) = loaded.hosts
    host = remote_host(entry, results_globs=loaded.results.globs, timeout_hours=1)
    return asyncio.run(to_running(host, slots_of(entry)[0]))


async def poll_cost(host: SlurmHost, polls: int = 10) -> tuple[float, int, float]:
    """Median wall ms of a poll, bytes of its answer, ms of CPU to parse it."""
    walls, text = [], ""
    for _ in range(polls):
        started = time.perf_counter()
        await host.observe()
        walls.append((time.perf_counter() - started) * 1e3)
    answer = await host.connection.run(host._observe_command)
    if isinstance(answer, Ok):
        text = answer.stdout
    cpu = time.thread_time()
    for _ in range(5):
        parse_observe(text)
    return statistics.median(walls), len(text.encode()), (time.thread_time() - cpu) / 5 * 1e3


def finish_jobs(cluster: SlurmCluster, count: int, folder: Path) -> None:
    """``count`` ended jobs of ours in Slurm's memory (named as the daemon names them)."""
    script = folder / "submit.sh"
    script.write_text(
        f"for i in $(seq 1 {count}); do sbatch --parsable --job-name=mqi:old-$i:a1 "
        f"--comment=mqi-slot=slot0 --output=/dev/null --wrap=true >/dev/null; done\n"
    )
    cluster.run("sh", str(script))
    while cluster.run("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING").strip():
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--finished", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mqi-bench-slurm-") as folder:
        root = Path(folder)
        cluster = SlurmCluster(gpus=4).start()
        login = Sshd(root / "login", env=cluster.env)
        login.start()
        try:
            slurm_section = {"partition": "gpu", "slots": 4, "gres": "gpu:1"}
            cluster_entry = {"name": "cluster", "backend": "slurm", "groups": [],
                             "slurm": slurm_section}  # fmt: skip
            sleeping = {"remote_command": "sleep 30"}
            with ThreadedSandboxNode(root / "node", groups=GROUPS) as node:
                pueue_site = write_config(root / "pueue", node, host={"groups": list(GROUPS)})
                pueue = run_cases(pueue_site, args.cases)
                groups = {"groups": list(GROUPS), **sleeping}
                pueue_start = latency(write_config(root / "pueue-latency", node, host=groups))
            slurm_site = write_config(root / "slurm", login, host=cluster_entry)
            slurm = run_cases(slurm_site, args.cases)
            slurm_start = latency(write_config(root / "slurm-latency", login,
                                               host={**cluster_entry, **sleeping}))  # fmt: skip
            shown = (("pueue sandbox", pueue, pueue_start), ("slurm 22.05", slurm, slurm_start))
            for name, (rate, done), start in shown:
                print(f"{name:<14} submit to running median {statistics.median(start):.2f} s "
                      f"(max {max(start):.2f}); {args.cases} zero-time cases on 4 GPUs "
                      f"{rate:6.1f} cases/min, upload to end seen median "
                      f"{statistics.median(done):.2f} s")  # fmt: skip
            slower = statistics.median(slurm_start) / statistics.median(pueue_start)
            print(f"slurm / pueue: throughput x{slurm[0] / pueue[0]:.2f}, submit to running "
                  f"x{slower:.2f}\n")  # fmt: skip

            config = load_config(slurm_site).config
            host_config = config.hosts[0]
            target = dataclasses.replace(ssh_target(host_config), ssh_config=())
            host = SlurmHost(host_config, HostConnection(target), results_globs=("output/*",),
                             timeout_hours=1)  # fmt: skip

            async def measure() -> tuple[tuple[float, int, float], tuple[float, int, float]]:
                try:
                    small = await poll_cost(host)
                    await asyncio.to_thread(finish_jobs, cluster, args.finished, root)
                    return small, await poll_cost(host)
                finally:
                    await host.close()

            small, large = asyncio.run(measure())
            for label, (wall, size, cpu) in ((f"{args.cases} ended jobs", small),
                                             (f"+{args.finished} ended jobs", large)):  # fmt: skip
                print(f"poll with {label:<18}: {wall:6.1f} ms wall, {size:>8,} bytes, "
                      f"parse {cpu:5.2f} ms")  # fmt: skip
            print(f"poll cost with {args.finished} more ended jobs in Slurm's memory: wall "
                  f"x{large[0] / small[0]:.2f}, bytes x{large[1] / small[1]:.1f}, parse "
                  f"x{large[2] / max(small[2], 1e-6):.1f}")  # fmt: skip
        finally:
            login.stop()
            cluster.stop()


if __name__ == "__main__":
    main()
