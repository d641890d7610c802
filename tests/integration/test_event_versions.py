"""Events are never edited: old versions are upcast on read, moved classes stay readable."""

from datetime import UTC, datetime
from pathlib import Path

from eventsourcing.domain import event
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, register_topic

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.ids import case_uuid, host_uuid
from mqi_es.core.states import CaseState, HostState
from mqi_es.domain import Case, Host
from mqi_es.domain.recorded import Recorded
from projections import runner
from projections.feed import EventFeed
from projections.reader import ViewReader


class Probe(Recorded):
    """A test aggregate whose event gained a field in version 2."""

    class Measured(Recorded.Event):
        class_version = 2
        dose_gy: float
        unit: str

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["unit"] = "Gy"  # version 1 always meant gray

    def __init__(self, actor: str, reason: str = "") -> None:
        self.dose_gy: float | None = None

    @event(Measured)
    def measure(self, dose_gy: float, unit: str, actor: str, reason: str = "") -> None:
        self.dose_gy = dose_gy
        self.unit = unit


def test_an_event_stored_under_version_1_loads_upcast(tmp_path: Path):
    ledger = Ledger(sqlite_event_store_env(tmp_path / "events.sqlite"))
    probe = Probe(actor="daemon")
    ledger.save(probe)
    v1_state = {"timestamp": probe.modified_on, "actor": "daemon", "reason": "", "dose_gy": 2.0}
    ledger.recorder.insert_events([
        StoredEvent(
            originator_id=probe.id,
            originator_version=2,
            topic=get_topic(Probe.Measured),
            state=ledger.mapper.transcoder.encode(v1_state),  # no class_version: version 1
        )
    ])  # fmt: skip

    loaded = ledger.repository.get(probe.id)
    assert (loaded.dose_gy, loaded.unit) == (2.0, "Gy")

    feed = EventFeed(ledger)
    items = [item for item in feed.by_ids(range(1, feed.head() + 1)) if item[1] == probe.id.hex]
    assert items[-1][2].unit == "Gy"

    # Newly written events carry their version and are read as written.
    loaded.measure(dose_gy=1.5, unit="cGy", actor="daemon")
    ledger.save(loaded)
    assert ledger.repository.get(probe.id).unit == "cGy"


def test_an_event_stored_under_a_moved_class_topic_still_loads(tmp_path: Path):
    """Topics are module:QualName; a class that moves keeps its old topic registered."""
    old_case, old_detected = "mqi_es.case:Case", "mqi_es.case:Case.Detected"
    register_topic(old_case, Case)
    register_topic(old_detected, Case.Detected)
    ledger = Ledger(sqlite_event_store_env(tmp_path / "events.sqlite"))
    current = Case(case_id="moved", file_count=1, total_bytes=2, fingerprint="x", actor="d")
    state = {
        k: v
        for k, v in vars(current.collect_events()[0]).items()
        if k not in ("originator_id", "originator_version")
    }
    state["originator_topic"] = old_case
    ledger.recorder.insert_events([
        StoredEvent(
            originator_id=case_uuid("moved"),
            originator_version=1,
            topic=old_detected,
            state=ledger.mapper.transcoder.encode(state),
        )
    ])  # fmt: skip

    case = ledger.case("moved")
    assert (case.case_id, case.state) == ("moved", CaseState.WAITING)
    feed = EventFeed(ledger)
    (item,) = [i for i in feed.by_ids(range(1, feed.head() + 1)) if i[1] == case.id.hex]
    assert type(item[2]) is Case.Detected


def test_an_outage_recorded_by_an_earlier_release_still_loads_and_shows(tmp_path: Path):
    """Releases before BecameUnavailable recorded outages as BecameUnreachable."""
    ledger = Ledger(sqlite_event_store_env(tmp_path / "events.sqlite"))
    ledger.register_host("n1", "127.0.0.1", actor="daemon")
    since = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    state = {"timestamp": since, "actor": "daemon", "reason": "refused", "since": since}
    ledger.recorder.insert_events([
        StoredEvent(
            originator_id=host_uuid("n1"),
            originator_version=2,
            topic=get_topic(Host.BecameUnreachable),
            state=ledger.mapper.transcoder.encode(state),
        )
    ])  # fmt: skip

    host = ledger.host("n1")
    assert (host.state, host.unreachable_since) == (HostState.UNREACHABLE, since)
    feed = EventFeed(ledger)
    store = runner.open_views(tmp_path / "views.sqlite", feed)
    runner.catch_up(store, feed)
    store.close()
    with ViewReader(tmp_path / "views.sqlite", application_name=ledger.name).snapshot() as views:
        (view,) = views.hosts()
    assert (view.state, view.unreachable_since, view.reason) == (
        HostState.UNREACHABLE, since, "refused",
    )  # fmt: skip
    # What is recorded now is the new event, and the outage keeps its start.
    ledger.record_host_unavailable(
        "n1", state=HostState.QUEUE_DOWN, since=since.replace(hour=9), actor="d", reason="down"
    )
    assert ledger.host("n1").unreachable_since == since
