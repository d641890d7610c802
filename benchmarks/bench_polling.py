"""Status polling cost: one persistent connection against a new `ssh host CMD` per query.

Run: .venv/bin/python benchmarks/bench_polling.py [--queries 100]

Starts a private OpenSSH sshd on 127.0.0.1 (tests/fixtures/sshd.py) and asks it for a
real ``pueue status --json`` sample (``cat`` of the file: the transport is what is
measured) through HostConnection.run() and through a fresh ``ssh`` process per query.
Twice: with an empty ``~/.bashrc``, and with one that costs 50 ms, like the pyenv/conda/
module initialisation common on HPC nodes: bash sources it for every ``ssh host cmd``,
so it is paid per command on a persistent connection too.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mqi_es.outcome import Ok
from mqi_es.ssh import HostConnection, SshTarget
from tests.fixtures.sshd import HOST_ALIAS, Sshd

SAMPLE = Path(__file__).resolve().parents[2] / "shared/pueue-samples/v4_status_all_states.json"
RC_FILES = {"empty ~/.bashrc": "", "~/.bashrc costing 50 ms": "sleep 0.05\n"}


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
            target = SshTarget(
                name="bench",
                host=server.host,
                port=server.port,
                user=server.user,
                key_file=server.key_file,
                known_hosts=server.known_hosts,
            )

            async def measure(target: SshTarget = target, command: str = command) -> float:
                async with HostConnection(target) as node:
                    return await persistent(node, command, args.queries)

            ours = asyncio.run(measure())
            theirs = spawned(server, command, args.queries)
            print(f"{label:<26}{ours * 1e3:>9.1f} ms{theirs * 1e3:>12.1f} ms{theirs / ours:>8.1f}x")


if __name__ == "__main__":
    main()
