"""The sandbox GPU node: a ``pueue``-compatible task runner and an SSH server on 127.0.0.1.

Tests and the demo need a GPU node without an HPC. ``SandboxNode`` starts one under a root
folder: a stand-in pueue daemon (``pueued.py``) and its client (``pueue_cli.py``, reached
through ``<root>/bin/pueue``), asyncssh's SSH server running real commands and SFTP
(``ssh_server.py``) behind a fault-injecting TCP gate (``gate.py``). ``ThreadedSandboxNode``
runs it for synchronous callers; ``python -m mqi_es.sandbox --root DIR`` as its own process.

The names are loaded lazily: the client and the daemon import this package on every start
and must not pay for asyncssh.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqi_es.sandbox.faults import PueueFaults
    from mqi_es.sandbox.node import SandboxError, SandboxNode
    from mqi_es.sandbox.threaded import ThreadedSandboxNode

__all__ = ["PueueFaults", "SandboxError", "SandboxNode", "ThreadedSandboxNode"]

_HOMES = {
    "PueueFaults": "mqi_es.sandbox.faults",
    "SandboxError": "mqi_es.sandbox.node",
    "SandboxNode": "mqi_es.sandbox.node",
    "ThreadedSandboxNode": "mqi_es.sandbox.threaded",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
