"""A msgspec MessagePack transcoder and mapper for the event store.

Event state holds only str, int, float, bool, None, lists, dicts and timezone-aware
datetimes. MessagePack carries all of them natively (datetimes as the timestamp
extension, decoded back as UTC-aware datetimes), so no type tags are needed and both
directions run in C. benchmarks/bench_store.py measures it against eventsourcing's
default JSON transcoder.
"""

from __future__ import annotations

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

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return self.event_from(
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.topic,
            stored_event.state,
        )

    def event_from(
        self, originator_id: UUID | str, originator_version: int, topic: str, state: bytes
    ) -> Any:
        found = self._classes.get(topic)
        if found is None:
            cls = resolve_topic(topic)
            found = self._classes[topic] = (cls, getattr(cls, "class_version", 1))
        cls, class_version = found
        try:
            event_state: dict[str, Any] = self._decode(state)
        except msgspec.DecodeError as e:
            raise MapperDeserialisationError(
                f"cannot decode event {originator_id} v{originator_version} ({topic}): {e}"
            ) from e
        if isinstance(originator_id, str):
            originator_id = self._uuid(originator_id)
        event_state["originator_id"] = originator_id
        event_state["originator_version"] = originator_version
        version = event_state.pop("class_version", 1)
        while version < class_version:
            getattr(cls, f"upcast_v{version}_v{version + 1}")(event_state)
            version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return domain_event

    def _uuid(self, text: str) -> UUID:
        found = self._ids.get(text)
        if found is None:
            if len(self._ids) >= self._ID_CACHE_SIZE:
                self._ids.clear()
            found = self._ids[text] = UUID(text)
        return found
