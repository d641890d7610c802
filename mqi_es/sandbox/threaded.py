"""A ``SandboxNode`` on its own event-loop thread, for synchronous code.

pytest fixtures, scripts and the demo drive the node with plain calls; the node's servers
keep running in the background thread while the caller blocks, runs subprocesses or runs
its own event loop (an asyncssh client in ``asyncio.run`` talks to the node over TCP).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from mqi_es.sandbox.faults import StatusOutput
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

    @property
    def host(self) -> str:
        return self.node.host

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def user(self) -> str:
        return self.node.user

    @property
    def key_file(self) -> Path:
        return self.node.key_file

    @property
    def known_hosts(self) -> Path:
        return self.node.known_hosts

    @property
    def home(self) -> Path:
        return self.node.home

    @property
    def bin_dir(self) -> Path:
        return self.node.bin_dir

    @property
    def pueue_dir(self) -> Path:
        return self.node.pueue_dir

    @property
    def daemon_pid(self) -> int | None:
        return self.node.daemon_pid

    def client_env(self, **extra: str) -> dict[str, str]:
        return self.node.client_env(**extra)

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

    # -- controls -------------------------------------------------------------------------

    def stop_pueue_daemon(self) -> None:
        self._call(self.node.stop_pueue_daemon())

    def start_pueue_daemon(self) -> None:
        self._call(self.node.start_pueue_daemon())

    def restart_pueue_daemon(self) -> None:
        self._call(self.node.restart_pueue_daemon())

    def set_fault(
        self,
        *,
        status_output: StatusOutput = "normal",
        delay_seconds: float = 0.0,
        delay_only_status: bool = False,
    ) -> None:
        self.node.set_fault(
            status_output=status_output,
            delay_seconds=delay_seconds,
            delay_only_status=delay_only_status,
        )

    def stop_ssh(self) -> None:
        self._call(self.node.stop_ssh())

    def start_ssh(self) -> None:
        self._call(self.node.start_ssh())

    def restart_ssh(self) -> None:
        self._call(self.node.restart_ssh())

    def freeze_ssh(self) -> None:
        self._call(self.node.freeze_ssh())

    def thaw_ssh(self) -> None:
        self._call(self.node.thaw_ssh())

    def cut_after(self, n_bytes: int | None) -> None:
        self._call(self.node.cut_after(n_bytes))
