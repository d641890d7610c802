"""Reading the views: frozen rows for the decision core and the CLI.

Opens the current generation read-only; in WAL mode a reader never blocks the writer
and always sees a consistent snapshot as of its last commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from mqi_es.states import CaseState, FailureCategory, HostState, KillCause, SlotState
from mqi_es.views import CaseView, HostView, RefusalView, SlotView
from projections import generations
from projections.schema import CASE_COLUMNS, HOST_COLUMNS, SLOT_COLUMNS


class ViewReader:
    """Read-only access to the current views."""

    def __init__(self, link: Path, *, application_name: str) -> None:
        self._link = link
        self._name = application_name

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """One consistent read transaction over every view."""
        path = generations.current(self._link)
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            connection.execute("BEGIN")
            yield Snapshot(connection, self._name)
        finally:
            connection.close()


class Snapshot:
    def __init__(self, connection: sqlite3.Connection, application_name: str) -> None:
        self._c = connection
        self._name = application_name

    def position(self) -> int:
        row = self._c.execute(
            "SELECT notification_id FROM tracking WHERE application_name = ?", (self._name,)
        ).fetchone()
        return row[0] if row else 0

    def cases(self, state: CaseState | None = None, *, active_only: bool = False) -> list[CaseView]:
        columns = ", ".join(CASE_COLUMNS)
        if state is not None:
            rows = self._c.execute(
                f"SELECT {columns} FROM cases WHERE state = ? ORDER BY arrival",  # noqa: S608
                (state.value,),
            )
        elif active_only:
            terminal = (CaseState.COMPLETED.value, CaseState.FAILED.value)
            rows = self._c.execute(
                f"SELECT {columns} FROM cases WHERE state NOT IN (?, ?) ORDER BY arrival",  # noqa: S608
                terminal,
            )
        else:
            rows = self._c.execute(f"SELECT {columns} FROM cases ORDER BY arrival")  # noqa: S608
        return [_case(row) for row in rows]

    def case(self, case_id: str) -> CaseView | None:
        row = self._c.execute(
            f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE case_id = ?",  # noqa: S608
            (case_id,),
        ).fetchone()
        return _case(row) if row else None

    def case_counts(self) -> dict[CaseState, int]:
        rows = self._c.execute("SELECT state, count(*) FROM cases GROUP BY state")
        return {CaseState(state): count for state, count in rows}

    def slots(self) -> list[SlotView]:
        rows = self._c.execute(
            f"SELECT {', '.join(SLOT_COLUMNS)} FROM gpu_slots ORDER BY host, grp"  # noqa: S608
        )
        return [_slot(row) for row in rows]

    def hosts(self) -> list[HostView]:
        rows = self._c.execute(
            f"SELECT {', '.join(HOST_COLUMNS)} FROM hosts ORDER BY name"  # noqa: S608
        )
        return [_host(row) for row in rows]

    def refusals(self) -> list[RefusalView]:
        rows = self._c.execute("SELECT name_repr, reason, refused_at FROM refusals ORDER BY 3")
        return [RefusalView(n, r, _time(t)) for n, r, t in rows]

    def is_refused(self, name_repr: str) -> bool:
        found = self._c.execute("SELECT 1 FROM refusals WHERE name_repr = ?", (name_repr,))
        return found.fetchone() is not None

    def subject_names(self) -> dict[str, str]:
        """Printable names of GPU slots and hosts by aggregate id (hex)."""
        names = {
            key: f"gpu {host}/{group}"
            for key, host, group in self._c.execute("SELECT aggregate_id, host, grp FROM gpu_slots")
        }
        names.update(
            (key, f"host {name}")
            for key, name in self._c.execute("SELECT aggregate_id, name FROM hosts")
        )
        return names

    def linked_notifications(self, case_id: str) -> list[int]:
        rows = self._c.execute(
            "SELECT notification_id FROM case_links WHERE case_id = ? ORDER BY 1", (case_id,)
        )
        return [row[0] for row in rows]


def _time(value: str | None) -> Any:
    return datetime.fromisoformat(value) if value is not None else None


def _case(row: tuple[Any, ...]) -> CaseView:
    r = dict(zip(CASE_COLUMNS, row, strict=True))
    return CaseView(
        case_id=r["case_id"],
        state=CaseState(r["state"]),
        arrival=r["arrival"],
        attempt=r["attempt"],
        detected_at=_time(r["detected_at"]),
        updated_at=_time(r["updated_at"]),
        state_since=_time(r["state_since"]),
        file_count=r["file_count"],
        total_bytes=r["total_bytes"],
        fingerprint=r["fingerprint"],
        host=r["host"],
        group=r["grp"],
        label=r["label"],
        remote_dir=r["remote_dir"],
        task_id=r["task_id"],
        task_created_at=_time(r["task_created_at"]),
        uploaded=bool(r["uploaded"]),
        started_at=_time(r["started_at"]),
        not_before=_time(r["not_before"]),
        timeout_hours=r["timeout_hours"],
        cancel_requested=bool(r["cancel_requested"]),
        kill_cause=KillCause(r["kill_cause"]) if r["kill_cause"] else None,
        failure=FailureCategory(r["failure"]) if r["failure"] else None,
        exit_code=r["exit_code"],
        infra_failures=r["infra_failures"],
        results_dir=r["results_dir"],
        reason=r["reason"] or "",
    )


def _slot(row: tuple[Any, ...]) -> SlotView:
    r = dict(zip(SLOT_COLUMNS, row, strict=True))
    return SlotView(
        host=r["host"],
        group=r["grp"],
        state=SlotState(r["state"]),
        updated_at=_time(r["updated_at"]),
        case_id=r["case_id"],
        attempt=r["attempt"],
        task_id=r["task_id"],
        reason=r["reason"] or "",
    )


def _host(row: tuple[Any, ...]) -> HostView:
    r = dict(zip(HOST_COLUMNS, row, strict=True))
    return HostView(
        name=r["name"],
        address=r["address"],
        state=HostState(r["state"]),
        updated_at=_time(r["updated_at"]),
        unreachable_since=_time(r["unreachable_since"]),
        last_outage_seconds=r["last_outage_seconds"],
        reason=r["reason"] or "",
    )
