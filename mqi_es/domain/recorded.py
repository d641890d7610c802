"""The base of every aggregate here: each event says who did it and why."""

from __future__ import annotations

from eventsourcing.domain import Aggregate


class Recorded(Aggregate):
    """An aggregate whose events all carry an actor and a reason.

    ``actor`` is ``daemon`` for the daemon and ``user:<login>`` for a CLI command;
    ``reason`` is free text ("" where none applies). The event's ``timestamp`` (UTC) is
    set by eventsourcing when the event is triggered.
    """

    class Event(Aggregate.Event):
        actor: str
        reason: str

    class Created(Event, Aggregate.Created):
        pass
