"""The three kinds of outcome of anything asked of a remote host.

``Ok``             the command ran and exited 0; its stdout is the answer.
``RemoteFailure``  the command ran and exited non-zero: the remote side said no.
``Unknown``        we could not ask, or could not understand the answer (unreachable,
                   timed out, connection lost, service down, unparseable output).

Only ``Ok`` and ``RemoteFailure`` are facts about the remote side. ``Unknown`` is a fact
about our view of it and must never change a case's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ok:
    stdout: str
    stderr: str = ""


@dataclass(frozen=True, slots=True)
class RemoteFailure:
    exit_status: int
    stderr: str
    stdout: str = ""


@dataclass(frozen=True, slots=True)
class Unknown:
    reason: str


Outcome = Ok | RemoteFailure | Unknown


def summary(failure: RemoteFailure) -> str:
    """What the node said, on one line short enough for a log or an event, and its exit
    status."""
    text = " ".join((failure.stderr or failure.stdout).split())[:300]
    return f"{text} (exit {failure.exit_status})" if text else f"exit {failure.exit_status}"


Progress = Callable[[int, int], None]
"""Called as work moves on: (units done, units in all), e.g. bytes of a transfer, events of
a replay."""
