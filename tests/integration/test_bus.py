"""The message bus over a real ledger: one handler per command type, what a refused or
failing command cancels, and what follows from a recorded one."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import typing
import unicodedata
from pathlib import Path

import pytest

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.bus import HANDLERS, MessageBus
from mqi_es.app.ledger import Ledger
from mqi_es.core import commands
from mqi_es.core.actions import Decision, Fetch, Memory, Submit
from mqi_es.core.commands import (
    DetectCase,
    HoldCase,
    RegisterHost,
    RegisterSlot,
    RetryCase,
    StartSubmission,
)
from mqi_es.core.errors import InvalidTransition
from mqi_es.core.ids import refusal_uuid
from mqi_es.core.states import CaseState


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(sqlite_event_store_env(tmp_path / "events.sqlite"))
    yield ledger
    ledger.close()


def test_every_command_type_has_a_handler_taking_exactly_its_fields_and_the_actor() -> None:
    types = set(typing.get_args(commands.Command))
    assert set(HANDLERS) == types
    for command, handler in HANDLERS.items():
        params = inspect.signature(handler).parameters
        taken = {name for name in params if name != "self"}
        fields = {f.name for f in dataclasses.fields(command)}
        assert taken == fields | {"actor"}, command.__name__
        required = {
            f.name
            for f in dataclasses.fields(command)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        optional_in_handler = {n for n, p in params.items() if p.default is not p.empty}
        assert not (required & optional_in_handler), command.__name__


def test_the_actions_of_a_case_whose_fact_was_refused_are_not_started(ledger: Ledger) -> None:
    bus = MessageBus(ledger, actor="daemon")
    bus.handle([RegisterHost(name="n1", address="127.0.0.1"), RegisterSlot(host="n1", slot="g")])
    for name in ("c1", "c2"):
        bus.execute(DetectCase(case_id=name, file_count=1, total_bytes=1, fingerprint="f"))
    decision = Decision(
        records=(
            RetryCase(case_id="c1", reason="a waiting case cannot be retried: refused"),
            StartSubmission(case_id="c2", host="n1", slot="g", remote_base_dir="~/m"),
        ),
        actions=(
            Fetch(case_id="c1", attempt=1, host="n1", remote_dir="~/m/c1"),
            Submit(case_id="c2", host="n1", slot="g"),
        ),
        memory=Memory(),
    )
    assert bus.decide(decision) == [Submit(case_id="c2", host="n1", slot="g")]
    assert ledger.case("c2").state is CaseState.SUBMITTING
    with pytest.raises(InvalidTransition):  # executed alone, the refusal is the answer
        bus.execute(RetryCase(case_id="c1", reason="again"))


def test_a_folder_whose_name_clashes_with_a_case_is_recorded_as_refused(ledger: Ledger) -> None:
    bus = MessageBus(ledger, actor="daemon")
    composed = unicodedata.normalize("NFC", "caf\u00e9")
    decomposed = unicodedata.normalize("NFD", composed)
    bus.execute(DetectCase(case_id=composed, file_count=1, total_bytes=1, fingerprint="f"))
    bus.execute(DetectCase(case_id=decomposed, file_count=1, total_bytes=1, fingerprint="f"))
    assert ledger.knows(refusal_uuid(decomposed))
    assert ledger.case(composed).state is CaseState.WAITING


def test_a_case_put_on_hold_is_handed_to_the_intake_to_watch_again(ledger: Ledger) -> None:
    held: list[str] = []
    bus = MessageBus(ledger, actor="daemon", on_held=held.append)
    bus.execute(DetectCase(case_id="c1", file_count=1, total_bytes=1, fingerprint="f"))
    assert held == []
    bus.handle([HoldCase(case_id="c1", reason="its content changed")])
    assert held == ["c1"]
    assert ledger.case("c1").state is CaseState.HELD


def test_a_command_that_fails_is_contained_and_said_once(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bus = MessageBus(ledger, actor="daemon")
    bus.execute(DetectCase(case_id="c1", file_count=1, total_bytes=1, fingerprint="f"))

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(HANDLERS, HoldCase, disk_full)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert bus.handle([HoldCase(case_id="c1", reason="x")]) == {"c1"}
    said = [r for r in caplog.records if "could not be recorded" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info
    assert ledger.case("c1").state is CaseState.WAITING
