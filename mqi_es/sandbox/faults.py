"""Fault switches of the stand-in daemon, kept in a small JSON file in its state directory.

The daemon reads the file on every request, so a test flips a switch with one function
call and no restart. ``status_output`` corrupts what ``pueue status`` prints (``garbage``:
bytes that are not JSON, ``truncated``: the real answer cut in the middle); ``delay_seconds``
makes the daemon sleep before it handles a request (every request, or ``status`` only), as a
stuck daemon does. A delayed request is still carried out after the sleep, even when the
client has given up: the daemon had already received it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from mqi_es.sandbox.protocol import Reply

StatusOutput = Literal["normal", "garbage", "truncated"]

# Not JSON, not even UTF-8: what a broken pipe or a confused terminal can leave behind.
GARBAGE = b"\x1b[31m\xff\xfe pueue: \x00garbled {{{ not json\n"


@dataclass(frozen=True, slots=True)
class PueueFaults:
    status_output: StatusOutput = "normal"
    delay_seconds: float = 0.0
    delay_only_status: bool = False

    def __post_init__(self) -> None:
        if self.status_output not in ("normal", "garbage", "truncated"):
            raise ValueError(f"unknown status_output {self.status_output!r}")
        if self.delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")

    def delay_for(self, command: str) -> float:
        if self.delay_only_status and command != "status":
            return 0.0
        return self.delay_seconds


def write_faults(path: Path, faults: PueueFaults) -> None:
    """Switch faults on (or off, with ``PueueFaults()``) atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(asdict(faults)))
    temporary.chmod(0o600)
    temporary.replace(path)


def read_faults(path: Path) -> PueueFaults:
    try:
        return PueueFaults(**json.loads(path.read_text()))
    except FileNotFoundError:
        return PueueFaults()


def corrupt(output: bytes, mode: StatusOutput) -> bytes:
    if mode == "garbage":
        return GARBAGE
    if mode == "truncated":
        return output[: len(output) // 2]
    return output


def corrupted_reply(reply: Reply, faults: PueueFaults) -> Reply:
    """``reply`` with its stdout damaged the way ``faults.status_output`` asks."""
    output = corrupt(reply.stdout.encode("utf-8"), faults.status_output)
    return Reply(output.decode("utf-8", "surrogateescape"), reply.stderr, reply.code)
