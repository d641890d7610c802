"""A msgspec MessagePack transcoder and mapper for the event store.

Event state holds only str, int, float, bool, None, lists, dicts and timezone-aware
datetimes. MessagePack carries all of them natively (datetimes as the timestamp
extension, decoded back as UTC-aware datetimes), so no type tags are needed and both
directions run in C. benchmarks/bench_store.py measures it against eventsourcing's
default JSON transcoder.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder
from eventsourcing.utils import resolve_topic


def _refuse(obj: Any) -> Any:
    raise TypeError(
        f"event field of type {type(obj).__name__} cannot be stored: use str, int, float, "
        "bool, None, list, dict or an aware datetime"
    )


class MsgspecTranscoder(Transcoder):
    """Encodes event state as MessagePack with msgspec."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_refuse)
        self._decoder = msgspec.msgpack.Decoder()

    def encode(self, obj: Any) -> bytes:
        _check_aware(obj)
        return self._encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data)


def _check_aware(state: Any) -> None:
    # Refuse what would not survive the round trip unchanged: MessagePack reads a naive
    # datetime back as UTC, and a UUID or a tuple back as a str or a list.
    if isinstance(state, dict):
        for value in state.values():
            if isinstance(value, datetime) and value.tzinfo is None:
                raise ValueError("naive datetime in event state: record times in UTC")
            if isinstance(value, UUID | tuple):
                raise TypeError(f"{type(value).__name__} in event state would not round-trip")


class MsgspecMapper(Mapper[UUID]):
    """A mapper for ``MsgspecTranscoder`` that also decodes rows read in bulk.

    ``event_from`` does what ``Mapper.to_domain_event`` does (resolve the topic, decode,
    upcast, build the frozen event without running its ``__init__``) with the topic
    classes and recent aggregate ids cached: replaying a million events spends most of
    its time here. Compression and encryption are not used by this project.
    """

    _ID_CACHE_SIZE = 65_536

    def __init__(self) -> None:
        super().__init__(transcoder=MsgspecTranscoder())
        self._decode = msgspec.msgpack.Decoder().decode
        self._classes: dict[str, tuple[type, int]] = {}
        self._ids: dict[str, UUID] = {}
        self.term: int | None = None  # a leader's term, stored with each of its events

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """The stored form of an event, with the leadership term under which it was
        recorded (``term``; read back as the event's ``term`` attribute)."""
        stored = super().to_stored_event(domain_event)
        if self.term is None:
            return stored
        state = self._decode(stored.state)
        state["term"] = self.term
        return dataclasses.replace(stored, state=self.transcoder.encode(state))

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        originator_id = stored_event.originator_id
        return self.event_from(
            originator_id.hex if isinstance(originator_id, UUID) else originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )

    def event_from(
        self, originator_id: str, originator_version: int, topic: str, state: bytes
    ) -> Any:
        """The domain event of one stored row (``originator_id`` as its 32 hex digits)."""
        cls, event_state = self.state_from(topic, state)
        uuid = self._ids.get(originator_id)
        if uuid is None:
            uuid = self._new_id(originator_id)
        event_state["originator_id"] = uuid
        event_state["originator_version"] = originator_version
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event

    def state_from(self, topic: str, state: bytes) -> tuple[type, dict[str, Any]]:
        """An event's class and its fields (upcast to the current version), without
        building the event: the projections read fields, and a million events' worth of
        objects and UUIDs would cost replay a sixth of its time."""
        found = self._classes.get(topic)
        if found is None:
            found = self._resolve(topic)
        try:
            event_state: dict[str, Any] = self._decode(state)
        except msgspec.DecodeError as e:
            raise MapperDeserialisationError(f"cannot decode a stored {topic}: {e}") from e
        cls, class_version = found
        if class_version > 1 or "class_version" in event_state:
            _upcast(cls, class_version, event_state)
        return cls, event_state

    def _resolve(self, topic: str) -> tuple[type, int]:
        cls = resolve_topic(topic)
        found = self._classes[topic] = (cls, getattr(cls, "class_version", 1))
        return found

    def _new_id(self, text: str) -> UUID:
        if len(self._ids) >= self._ID_CACHE_SIZE:
            self._ids.clear()
        uuid = self._ids[text] = UUID(text)
        return uuid


def _upcast(cls: type, class_version: int, event_state: dict[str, Any]) -> None:
    """Bring a stored state written under an older class version up to the current one."""
    version = event_state.pop("class_version", 1)
    while version < class_version:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(event_state)
        version += 1
