"""How the events of GPU slots, hosts, case names, refused folders and the log itself change
their views."""

from __future__ import annotations

from mqi_es.core.states import HostState, SlotState
from mqi_es.domain import CaseName, EventLog, Host, Refusal, Slot
from projections.fold import Batch, Fields, Row, on

# --- GPU slots -------------------------------------------------------------------------

_FREE_SLOT: Row = {
    "state": SlotState.FREE, "case_id": None, "attempt": None, "task_id": None,
    "task_label": None, "task_created_at": None,
}  # fmt: skip


def _slot_touch(batch: Batch, row: Row, e: Fields, nid: int, case_id: str | None) -> None:
    row["updated_at"] = e["timestamp"]
    row["reason"] = e["reason"]
    if case_id is not None:
        batch.links.append((case_id, nid))


@on(Slot.Registered, creates=True)
def _slot_registered(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(_FREE_SLOT)
    row.update(host=e["host"], name=e["name"])
    _slot_touch(batch, row, e, nid, None)


@on(Slot.Allocated)
def _allocated(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(state=SlotState.ALLOCATED, case_id=e["case_id"], attempt=e["attempt"])
    _slot_touch(batch, row, e, nid, e["case_id"])


@on(Slot.Released)
def _released(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(_FREE_SLOT)
    _slot_touch(batch, row, e, nid, e["case_id"])


@on(Slot.Quarantined)
def _quarantined(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        state=SlotState.QUARANTINED, task_id=e["task_id"], task_label=e["task_label"],
        task_created_at=e["task_created_at"],
    )  # fmt: skip
    _slot_touch(batch, row, e, nid, e["case_id"])


@on(Slot.QuarantineLifted)
def _quarantine_lifted(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    case_id = row["case_id"]
    row.update(_FREE_SLOT)
    _slot_touch(batch, row, e, nid, case_id)


@on(Slot.BusyElsewhere)
def _busy(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row["state"] = SlotState.BUSY
    _slot_touch(batch, row, e, nid, None)


@on(Slot.FreedElsewhere)
def _freed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row["state"] = SlotState.FREE
    _slot_touch(batch, row, e, nid, None)


@on(Slot.Resumed)
def _slot_resumed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _slot_touch(batch, row, e, nid, row["case_id"])


# --- hosts -----------------------------------------------------------------------------


def _link_host_event(batch: Batch, row: Row, nid: int) -> None:
    for key in batch.active_cases_on(row["name"]):
        batch.links.append((batch.row("cases", key)["case_id"], nid))


@on(Host.Registered, creates=True)
def _host_registered(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        name=e["name"],
        address=e["address"],
        state=HostState.UNKNOWN,
        updated_at=e["timestamp"],
        unreachable_since=None,
        last_outage_seconds=None,
        reason=e["reason"],
    )


@on(Host.BecameUnavailable)
def _unavailable(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _became_unavailable(batch, row, e, nid, e["state"])


@on(Host.BecameUnreachable)  # written by earlier releases
def _unreachable(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    _became_unavailable(batch, row, e, nid, HostState.UNREACHABLE)


def _became_unavailable(batch: Batch, row: Row, e: Fields, nid: int, state: str) -> None:
    row.update(
        state=state, unreachable_since=e["since"], updated_at=e["timestamp"], reason=e["reason"]
    )
    _link_host_event(batch, row, nid)


@on(Host.BecameReachable)
def _reachable(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(
        state=HostState.REACHABLE,
        unreachable_since=None,
        updated_at=e["timestamp"],
        last_outage_seconds=e["outage_seconds"],
        reason=e["reason"],
    )
    _link_host_event(batch, row, nid)


# --- the log itself ----------------------------------------------------------------------


@on(EventLog.Started, creates=True)
def _log_started(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row["log_id"] = e["log_id"]


# --- case names ------------------------------------------------------------------------


@on(CaseName.Claimed, creates=True)
def _claimed(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(name_key=e["key"], case_id=e["case_id"])


# --- refusals --------------------------------------------------------------------------


@on(Refusal.Refused, creates=True)
def _refused(batch: Batch, row: Row, e: Fields, nid: int) -> None:
    row.update(name_repr=e["name_repr"], reason=e["reason"], refused_at=e["timestamp"])
