"""A log recorded by an earlier release loads and replays into the same views.

``tests/data/logs/release-1`` holds a log written by the release that called slots
"groups", and what its `mqi` showed of it (see the README there). This release must show
the same, field for field, under the renames below and nothing else.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.domain import Case, Slot

RELEASE_1 = Path(__file__).resolve().parents[1] / "data" / "logs" / "release-1"

# What this release calls differently, per place it shows up.
CASE_KEYS = {"group": "slot"}  # CaseView.group -> slot
CASE_KEYS_GONE = {"uploaded"}  # never read: the history shows the upload
SLOT_KEYS = {"group": "name"}  # SlotView.group -> name
EVENT_NAMES = {"GroupResumed": "Resumed"}
DETAIL_KEYS = {"SubmissionStarted": {"group": "slot"}, "Registered": {"group": "name"}}

runner = CliRunner()


def renamed(row: dict[str, Any], keys: dict[str, str], gone: set[str] = set()) -> dict[str, Any]:  # noqa: B006
    return {keys.get(k, k): v for k, v in row.items() if k not in gone}


def as_this_release_shows(shown: dict[str, Any]) -> dict[str, Any]:
    """Release 1's output, in this release's words."""
    history = {
        case_id: [
            {
                **entry,
                "event": EVENT_NAMES.get(entry["event"], entry["event"]),
                "term": None,  # new here: a leader's term (none in an SQLite log)
                "details": {
                    **renamed(entry["details"], DETAIL_KEYS.get(entry["event"], {})),
                    # new here: where the task ran, when the host says (v2 of TaskStarted)
                    **({"node": None} if entry["event"] == "TaskStarted" else {}),
                },
            }
            for entry in trail
        ]
        for case_id, trail in shown["history"].items()
    }
    return {
        # new here: how far each run got (release 1 did not read it)
        "cases": [
            {
                **renamed(c, CASE_KEYS, CASE_KEYS_GONE),
                "progress": None,
                "progress_at": None,
                "node": None,
            }
            for c in shown["cases"]
        ],
        "gpus": [renamed(s, SLOT_KEYS) for s in shown["gpus"]],
        "status": {
            # new here: alarms, none in a log recorded before alarms were facts
            "open_alarms": [],
            "acknowledged_alarms": [],
            **shown["status"],
            "gpus": [renamed(s, SLOT_KEYS) for s in shown["status"]["gpus"]],
            # new here: the daemon's last cycle (no daemon runs)
            "last_cycle_at": None,
            "last_cycle_overdue": False,
            # new here: a shared log's leader and standbys (none with SQLite)
            "leadership": None,
        },
        "history": history,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "var").mkdir(mode=0o700)
    (tmp_path / "incoming").mkdir()
    shutil.copy(RELEASE_1 / "events.sqlite", tmp_path / "var" / "events.sqlite")
    (tmp_path / "mqi.yaml").write_text(
        "scanner:\n  watch_path: incoming\n"
        "database:\n  path: var/events.sqlite\n  views_path: var/views.sqlite\n"
    )
    return tmp_path


def mqi(folder: Path, *args: str) -> str:
    result = runner.invoke(app, ["--config", str(folder / "mqi.yaml"), *args])
    assert result.exit_code == 0, result.output
    return result.output


def shown_by_this_release(folder: Path) -> dict[str, Any]:
    shown: dict[str, Any] = {
        k: json.loads(mqi(folder, k, "--json")) for k in ("status", "cases", "gpus")
    }
    shown["history"] = {
        c["case_id"]: json.loads(mqi(folder, "history", c["case_id"], "--json"))
        for c in shown["cases"]
    }
    return shown


def test_a_release_1_log_replays_into_what_release_1_showed(folder: Path) -> None:
    expected = as_this_release_shows(json.loads((RELEASE_1 / "shown.json").read_text()))

    assert "replayed 101 events" in mqi(folder, "replay")
    shown = shown_by_this_release(folder)

    assert shown["cases"] == expected["cases"]
    assert shown["gpus"] == expected["gpus"]
    assert shown["status"] == expected["status"]
    assert shown["history"] == expected["history"]
    assert len(shown["cases"]) == 11 and sum(map(len, shown["history"].values())) == 72


def test_every_stored_event_loads_as_this_releases_class_with_its_fields_renamed(
    folder: Path,
) -> None:
    ledger = Ledger(sqlite_event_store_env(folder / "var" / "events.sqlite"))
    try:
        resumed = ledger.slot("node1", "gpu1")
        busy = ledger.slot("node2", "gpu0")
        events = list(ledger.events.get(resumed.id))
        submitted = [e for e in ledger.events.get(ledger.case("c-ok").id)]
    finally:
        ledger.close()

    assert (resumed.host, resumed.name, busy.name) == ("node1", "gpu1", "gpu0")
    assert isinstance(events[0], Slot.Registered) and events[0].name == "gpu1"  # type: ignore[attr-defined]
    assert all(type(e).__qualname__.startswith("Slot.") for e in events)
    (resumes,) = [e for e in events if isinstance(e, Slot.Resumed)]  # was GroupResumed
    assert resumes.reason == "group paused by a pueue restart"  # type: ignore[attr-defined]
    started = next(e for e in submitted if isinstance(e, Case.SubmissionStarted))
    assert (started.host, started.slot) == ("node1", "gpu0")  # type: ignore[attr-defined]


def test_this_release_goes_on_writing_a_release_1_log(folder: Path) -> None:
    mqi(folder, "replay")
    ledger = Ledger(sqlite_event_store_env(folder / "var" / "events.sqlite"))
    try:
        ledger.record_slot_resumed("node1", "gpu0", actor="daemon", reason="held again")
        ledger.start_submission(
            "c-fail", host="node2", slot="gpu0", remote_base_dir="~/mqi", actor="daemon"
        )
    finally:
        ledger.close()

    gpus = json.loads(mqi(folder, "gpus", "--json"))
    trail = json.loads(mqi(folder, "history", "c-fail", "--json"))

    assert [(g["host"], g["name"], g["state"], g["case_id"]) for g in gpus][-1] == (
        "node2", "gpu0", "allocated", "c-fail",
    )  # fmt: skip
    assert trail[-2]["details"]["slot"] == "gpu0" and trail[-1]["event"] == "Allocated"
    assert "views match the log" in mqi(folder, "replay", "--check")
