"""Run a sandbox node as its own process until SIGTERM or SIGINT.

    python -m mqi_es.sandbox --root DIR [--groups gpu0,gpu1] [--status-format v4] [--port N]

Once the node is up, one line of JSON (host, port, user, key and known_hosts files, home,
pueue_dir, ...) is printed on stdout. SIGTERM/SIGINT stop the node (every task, command and
the daemon) and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from mqi_es.sandbox.node import SandboxNode


async def _serve(node: SandboxNode) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with node:
        print(json.dumps(node.summary()), flush=True)
        await stopping.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqi_es.sandbox", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="folder for everything")
    parser.add_argument("--groups", default="gpu0,gpu1", help="comma-separated pueue groups")
    parser.add_argument("--status-format", choices=("v4", "v3"), default="v4")
    parser.add_argument("--port", type=int, default=0, help="SSH port (0: any free port)")
    args = parser.parse_args(argv)
    groups = tuple(name for name in args.groups.split(",") if name)
    node = SandboxNode(args.root, groups=groups, status_format=args.status_format, port=args.port)
    asyncio.run(_serve(node))
    return 0


if __name__ == "__main__":
    sys.exit(main())
