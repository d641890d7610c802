"""Status polling cost: one persistent connection against a new `ssh host CMD` per query.

Run: .venv/bin/python benchmarks/bench_polling.py [--queries 100]

Starts a private OpenSSH sshd on 127.0.0.1 (tests/fixtures/sshd.py) and asks it for a
real ``pueue status --json`` sample (``cat`` of the file: the transport is what is
measured) through HostConnection.run() and through a fresh ``ssh`` process per query.
Twice: with an empty ``~/.bashrc``, and with one that costs 50 ms, like the pyenv/conda/
module initialisation common on HPC nodes: bash sources it for every ``ssh host cmd``,
so it is paid per command on a persistent connection too.

Then the whole poll as the daemon makes it: ``PueueHost.observe()`` (one real
``pueue status --json`` of the sandbox's pueue stand-in behind the same sshd, parsed into a
snapshot) against a fresh ``ssh host pueue status --json`` per query (output not parsed).
The stand-in's client is a Python program: both sides pay its start-up, so this ratio is
lower than the transport's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqi_es.adapters.pueue.host import PueueHost
from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.target import SshTarget, ssh_target
from mqi_es.config.schema import HostConfig
from mqi_es.core.outcome import Ok
from mqi_es.core.remote import Seen
from mqi_es.sandbox import ThreadedSandboxNode
from tests.fixtures.sshd import HOST_ALIAS, Sshd
from tests.fixtures.sshd import ssh_target as sshd_target

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "pueue-samples"
SAMPLE = SAMPLES / "v4_status_all_states.json"
RC_FILES = {"empty ~/.bashrc": "", "~/.bashrc costing 50 ms": "sleep 0.05\n"}
TASKS = 40  # finished tasks in the stand-in's queue: a status answer of realistic size


async def persistent(node: HostConnection, command: str, queries: int) -> float:
    await node.run("true")  # connected once, as the daemon is
    started = time.perf_counter()
    for _ in range(queries):
        outcome = await node.run(command)
        assert isinstance(outcome, Ok) and outcome.stdout, outcome
    return (time.perf_counter() - started) / queries


def spawned(server: Sshd, command: str, queries: int) -> float:
    started = time.perf_counter()
    for _ in range(queries):
        subprocess.run(
            ["ssh", "-F", str(server.ssh_config), HOST_ALIAS, command],
            check=True,
            capture_output=True,
        )
    return (time.perf_counter() - started) / queries


def row(label: str, ours: float, theirs: float) -> None:
    print(f"{label:<26}{ours * 1e3:>9.1f} ms{theirs * 1e3:>12.1f} ms{theirs / ours:>8.1f}x")


async def observed(host: PueueHost, queries: int) -> float:
    try:
        assert isinstance(await host.observe(), Seen)  # connected once, as the daemon is
        started = time.perf_counter()
        for _ in range(queries):
            seen = await host.observe()
            assert isinstance(seen, Seen) and len(seen.snapshot.tasks) == TASKS, seen
        return (time.perf_counter() - started) / queries
    finally:
        await host.close()


def pueue_host(server: Sshd) -> PueueHost:
    config = HostConfig(
        name="bench",
        host=server.host,
        port=server.port,
        user=server.user,
        key_file=server.key_file,
        known_hosts=server.known_hosts,
        remote_command="true",
        groups=("gpu0", "gpu1"),
    )
    target = dataclasses.replace(ssh_target(config), ssh_config=())  # no user ssh config
    return PueueHost(config, HostConnection(target), results_globs=("**/*.dcm",))


def fill_queue(node: ThreadedSandboxNode) -> int:
    """Add TASKS quick tasks and wait (bounded) until all are done; the status size."""
    for index in range(TASKS):
        label = f"mqi:case-{index:04d}:a1"
        added = node.pueue("add", f"--group=gpu{index % 2}", f"--label={label}", "--", "true")
        assert added.returncode == 0, added.stderr
    deadline = time.monotonic() + 60
    while any("Done" not in task["status"] for task in node.status()["tasks"].values()):
        assert time.monotonic() < deadline, "the stand-in did not finish its tasks in 60 s"
        time.sleep(0.1)
    return len(node.pueue("status", "--json").stdout.encode())


def pueue_status_row(queries: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as temp:
        root = Path(temp)
        # One root: sshd's home is the stand-in's home, its client on the remote PATH.
        with Sshd(root, extra_path=[root / "bin"]) as server, ThreadedSandboxNode(root) as node:
            size = fill_queue(node)
            ours = asyncio.run(observed(pueue_host(server), queries))
            theirs = spawned(server, "pueue status --json", queries)
            started = time.perf_counter()
            for _ in range(queries):
                node.pueue("status", "--json")
            local = (time.perf_counter() - started) / queries
    print(f"\n{queries} polls of the pueue stand-in ({TASKS} tasks, {size} bytes of status)")
    print(f"{'':<26}{'observe()':>12}{'ssh per query':>15}{'ratio':>9}")
    row("empty ~/.bashrc", ours, theirs)
    print(f"of which the stand-in client itself, run locally: {local * 1e3:.1f} ms per query")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    print(f"{args.queries} status queries each ({SAMPLE.name}, {SAMPLE.stat().st_size} bytes)")
    print(f"{'remote shell':<26}{'persistent':>12}{'ssh per query':>15}{'ratio':>9}")
    for label, bashrc in RC_FILES.items():
        with (
            tempfile.TemporaryDirectory(prefix="bench-polling-") as temp,
            Sshd(Path(temp), bashrc=bashrc) as server,
        ):
            shutil.copy(SAMPLE, server.home / "status.json")
            command = "cat ~/status.json"
            target = sshd_target(server, name="bench")

            async def measure(target: SshTarget = target, command: str = command) -> float:
                async with HostConnection(target) as node:
                    return await persistent(node, command, args.queries)

            ours = asyncio.run(measure())
            theirs = spawned(server, command, args.queries)
            row(label, ours, theirs)
    pueue_status_row(args.queries)


if __name__ == "__main__":
    main()
