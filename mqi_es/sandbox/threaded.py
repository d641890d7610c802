"""A ``SandboxNode`` on its own event-loop thread, for synchronous code.

pytest fixtures, scripts and the demo drive the node with plain calls; the node's servers
keep running in the background thread while the caller blocks, runs subprocesses or runs
its own event loop (an asyncssh client in ``asyncio.run`` talks to the node over TCP).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from mqi_es.sandbox.node import SandboxNode

T = TypeVar("T")

CONTROL_TIMEOUT_SECONDS = 60.0


class ThreadedSandboxNode:
    """Same options as :class:`SandboxNode`; every control is a blocking call."""

    def __init__(self, root: Path, **options: Any) -> None:
        self.node = SandboxNode(root, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sandbox-node", daemon=True
        )

    def __enter__(self) -> ThreadedSandboxNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ThreadedSandboxNode:
        self._thread.start()
        try:
            self._call(self.node.start())
        except BaseException:
            self._shut_down_loop()
            raise
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self.node.stop())
        finally:
            self._shut_down_loop()

    def _shut_down_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(CONTROL_TIMEOUT_SECONDS)

    # -- where things are -----------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """Everything else is the node's: its attributes (host, port, key_file, home, ...)
        as they are, and its async controls (stop_ssh, restart_pueue_daemon, ...) as
        blocking calls."""
        if name == "node":  # not set yet: __init__ failed
            raise AttributeError(name)
        attribute = getattr(self.node, name)
        if inspect.iscoroutinefunction(attribute):
            return lambda *args, **kwargs: self._call(attribute(*args, **kwargs))
        return attribute

    # -- the stand-in, run locally --------------------------------------------------------

    def pueue(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the node's ``pueue`` here with ``client_env()`` (or ``env``)."""
        return subprocess.run(
            [str(self.bin_dir / "pueue"), *args],
            env=dict(env) if env is not None else self.client_env(),
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        """``pueue status --json``, parsed; raises if the command fails."""
        completed = self.pueue("status", "--json")
        if completed.returncode != 0:
            raise RuntimeError(f"pueue status failed: {completed.stderr.strip()}")
        result: dict[str, Any] = json.loads(completed.stdout)
        return result
