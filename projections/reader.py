"""Reading the views: frozen rows for the decision core and the CLI.

Opens the current generation read-only; in WAL mode a reader never blocks the writer
and always sees a consistent snapshot as of its last commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from mqi_es.core.errors import MqiError
from mqi_es.core.notices import Notice, NoticeKind
from mqi_es.core.run_progress import RunProgress
from mqi_es.core.states import (
    AlarmKind,
    AlarmState,
    CaseState,
    FailureCategory,
    HostState,
    KillCause,
    SlotState,
)
from mqi_es.core.views import (
    AlarmView,
    CaseView,
    HostView,
    Leftover,
    NotificationView,
    RefusalView,
    SlotView,
)
from projections import database, generations
from projections.schema import (
    ALARM_COLUMNS,
    CASE_COLUMNS,
    HOST_COLUMNS,
    NOTIFICATION_COLUMNS,
    SCHEMA_VERSION,
    SLOT_COLUMNS,
)


class ViewsOutdated(MqiError):
    """Raised when the views file was built by a release with another schema."""


class ViewsUnreadable(MqiError):
    """Raised when the views file is damaged (not a database, malformed, tables missing).
    Views are rebuilt from the log: by the daemon itself, else by any read command."""

    def __init__(self, path: Path, problem: object) -> None:
        super().__init__(
            f"the views {path} cannot be read ({problem}); they are rebuilt from the event "
            "log: by the daemon on its next cycle, or by `mqi replay` when none runs"
        )
        self.path = path
        self.problem = str(problem)


@contextmanager
def damage_reported(path: Path) -> Iterator[None]:
    """SQLite's errors for a damaged views file at ``path`` raised as ``ViewsUnreadable``;
    any other error as it is."""
    try:
        yield
    except database.DatabaseError as exc:
        if (damage := database.views_damage(exc)) is None:
            raise
        raise ViewsUnreadable(path, damage) from None


class ViewReader:
    """Read-only access to the current views."""

    def __init__(self, link: Path, *, application_name: str) -> None:
        self._link = link
        self._name = application_name

    @contextmanager
    def snapshot(self) -> Iterator[ViewSnapshot]:
        """One consistent read transaction over every view."""
        path = generations.current(self._link)
        connection = database.read_only(path)
        try:
            with damage_reported(path):
                (version,) = connection.execute("PRAGMA user_version").fetchone()
                if version != SCHEMA_VERSION:
                    raise ViewsOutdated(
                        f"the views in {path} were built by another release (schema {version},"
                        f" this one reads {SCHEMA_VERSION}): run `mqi replay`, or restart the"
                        " daemon"
                    )
                connection.execute("BEGIN")
                yield ViewSnapshot(connection, self._name)
        finally:
            connection.close()


class ViewSnapshot:
    """One consistent reading of the views, inside one read transaction
    (``mqi_es.app.ports.ViewSnapshot``)."""

    def __init__(self, connection: database.Connection, application_name: str) -> None:
        self._c = connection
        self._name = application_name

    def position(self) -> int:
        return database.tracked(self._c, self._name)

    def cases(self, state: CaseState | None = None, *, active_only: bool = False) -> list[CaseView]:
        columns = ", ".join(CASE_COLUMNS)
        if state is not None:
            rows = self._c.execute(
                f"SELECT {columns} FROM cases WHERE state = ? ORDER BY arrival",  # noqa: S608
                (state.value,),
            )
        elif active_only:
            # Listed, not "NOT IN (terminal)", so the state index is used: the cost stays
            # flat however many finished cases the history holds.
            active = [s.value for s in CaseState if not s.is_terminal]
            rows = self._c.execute(
                f"SELECT {columns} FROM cases WHERE state IN ({', '.join('?' * len(active))})"  # noqa: S608
                " ORDER BY arrival",
                active,
            )
        else:
            rows = self._c.execute(f"SELECT {columns} FROM cases ORDER BY arrival")  # noqa: S608
        return [_case(row) for row in rows]

    def cases_page(
        self,
        *,
        state: CaseState | None = None,
        search: str = "",
        before: int | None = None,
        limit: int = 50,
    ) -> tuple[list[CaseView], int]:
        """Newest first: at most ``limit`` cases that arrived before ``before`` (an arrival
        number, the last of the previous page), in ``state``, whose id contains ``search``;
        and how many match in all."""
        where, args = [], []
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        if search:
            where.append("instr(case_id, ?) > 0")  # a plain substring: no LIKE wildcards
            args.append(search)
        matching = f" WHERE {' AND '.join(where)}" if where else ""
        (total,) = self._c.execute(f"SELECT COUNT(*) FROM cases{matching}", args).fetchone()  # noqa: S608
        if before is not None:
            where.append("arrival < ?")
            args.append(before)
        shown = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._c.execute(
            f"SELECT {', '.join(CASE_COLUMNS)} FROM cases{shown}"  # noqa: S608
            " ORDER BY arrival DESC LIMIT ?",
            [*args, limit],
        )
        return [_case(row) for row in rows], total

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
            f"SELECT {', '.join(SLOT_COLUMNS)} FROM slots ORDER BY host, name"  # noqa: S608
        )
        return [_slot(row) for row in rows]

    def hosts(self) -> list[HostView]:
        rows = self._c.execute(
            f"SELECT {', '.join(HOST_COLUMNS)} FROM hosts ORDER BY name"  # noqa: S608
        )
        return [_host(row) for row in rows]

    def refusals(self) -> list[RefusalView]:
        rows = self._c.execute("SELECT name_repr, reason, refused_at FROM refusals ORDER BY 3")
        return [RefusalView(name_repr=n, reason=r, refused_at=_fromiso(t)) for n, r, t in rows]

    def log_id(self) -> str | None:
        """The identity of the log these views were built from (None: not seen yet)."""
        row = self._c.execute("SELECT log_id FROM event_log").fetchone()
        return row[0] if row else None

    def name_claims(self) -> list[tuple[str, str | None]]:
        """Every case id with each name key it claims (None: a case registered before
        names were claimed)."""
        return list(
            self._c.execute(
                "SELECT c.case_id, n.name_key FROM cases c"
                " LEFT JOIN case_names n ON n.case_id = c.case_id"
            )
        )

    def is_refused(self, name_repr: str) -> bool:
        found = self._c.execute("SELECT 1 FROM refusals WHERE name_repr = ?", (name_repr,))
        return found.fetchone() is not None

    def subject_names(self) -> dict[str, str]:
        """Printable names of GPU slots, hosts and alarms by aggregate id (hex)."""
        names = {
            key: f"gpu {host}/{slot}"
            for key, host, slot in self._c.execute("SELECT aggregate_id, host, name FROM slots")
        }
        names.update(
            (key, f"host {name}")
            for key, name in self._c.execute("SELECT aggregate_id, name FROM hosts")
        )
        names.update(
            (key, f"alarm {number}")
            for key, number in self._c.execute("SELECT aggregate_id, number FROM alarms")
        )
        names.update(
            (key, f"{channel} notice")
            for key, channel in self._c.execute("SELECT aggregate_id, channel FROM notifications")
        )
        return names

    def alarms(self, *, standing_only: bool = False) -> list[AlarmView]:
        """Alarms, newest first; ``standing_only``: those not cleared (open or acknowledged)."""
        where = " WHERE state != 'cleared'" if standing_only else ""
        rows = self._c.execute(
            f"SELECT {', '.join(ALARM_COLUMNS)} FROM alarms{where} ORDER BY number DESC"  # noqa: S608
        )
        return [_alarm(row) for row in rows]

    def alarm(self, number: int) -> AlarmView | None:
        row = self._c.execute(
            f"SELECT {', '.join(ALARM_COLUMNS)} FROM alarms WHERE number = ?",  # noqa: S608
            (number,),
        ).fetchone()
        return _alarm(row) if row else None

    def notifications(self, *, due_only: bool = False) -> list[NotificationView]:
        """Notifications, oldest first; ``due_only``: those not delivered yet."""
        where = " WHERE delivered = 0" if due_only else ""
        rows = self._c.execute(
            f"SELECT {', '.join(NOTIFICATION_COLUMNS)} FROM notifications{where}"  # noqa: S608
            " ORDER BY number"
        )
        return [_notification(row) for row in rows]

    def leftovers(self, ended_before: datetime) -> list[Leftover]:
        """Folders on the nodes of the cases that ended before ``ended_before``."""
        # Named: the planner would take cases_by_state and walk every ended case ever
        # (a cost that grows with the history); this index holds only cases with folders.
        rows = self._c.execute(
            "SELECT case_id, state, state_since, remote_folders FROM cases"
            " INDEXED BY cases_leftovers WHERE remote_folders IS NOT NULL"
            " AND state IN ('completed', 'failed') AND state_since <= ? ORDER BY state_since",
            (ended_before.isoformat(),),
        )
        return [
            Leftover(
                case_id=case_id,
                host=host,
                folder=folder,
                ended_at=_fromiso(since),
                failed=state == CaseState.FAILED,
            )
            for case_id, state, since, folders in rows
            for host, folder in json.loads(folders)
        ]

    def registered(self, case_ids: Iterable[str]) -> frozenset[str]:
        """Those of ``case_ids`` that are registered cases."""
        wanted, found = list(dict.fromkeys(case_ids)), set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._c.execute(
                    f"SELECT case_id FROM cases WHERE case_id IN ({marks})",  # noqa: S608
                    chunk,
                )
            )
        return frozenset(found)

    def linked_notifications(self, case_id: str) -> list[int]:
        rows = self._c.execute(
            "SELECT notification_id FROM case_links WHERE case_id = ? ORDER BY 1", (case_id,)
        )
        return [row[0] for row in rows]


_fromiso = datetime.fromisoformat
# Enum lookups by value through a dict: calling the enum class costs more than the rest of
# a row, and the daemon reads every active case each cycle.
_CASE_STATE = {s.value: s for s in CaseState}
_SLOT_STATE = {s.value: s for s in SlotState}
_HOST_STATE = {s.value: s for s in HostState}
_KILL_CAUSE = {c.value: c for c in KillCause}
_FAILURE = {f.value: f for f in FailureCategory}


def _time(value: str | None) -> Any:
    return _fromiso(value) if value is not None else None


def _case(row: tuple[Any, ...]) -> CaseView:
    (
        _,
        case_id,
        state,
        state_since,
        arrival,
        attempt,
        detected_at,
        updated_at,
        file_count,
        total_bytes,
        fingerprint,
        host,
        slot,
        label,
        remote_dir,
        task_id,
        task_created_at,
        started_at,
        seen_running_at,
        not_before,
        timeout_hours,
        cancel_requested,
        kill_cause,
        failure,
        exit_code,
        infra_failures,
        results_dir,
        reason,
        _remote_folders,  # housekeeping's (``leftovers``)
        progress_done,
        progress_total,
        progress_at,
        node,
    ) = row  # in CASE_COLUMNS order
    return CaseView(
        case_id=case_id,
        state=_CASE_STATE[state],
        arrival=arrival,
        attempt=attempt,
        detected_at=_fromiso(detected_at),
        updated_at=_fromiso(updated_at),
        state_since=_fromiso(state_since),
        file_count=file_count,
        total_bytes=total_bytes,
        fingerprint=fingerprint,
        host=host,
        slot=slot,
        label=label,
        remote_dir=remote_dir,
        task_id=task_id,
        task_created_at=_time(task_created_at),
        started_at=_time(started_at),
        seen_running_at=_time(seen_running_at),
        not_before=_time(not_before),
        timeout_hours=timeout_hours,
        cancel_requested=bool(cancel_requested),
        kill_cause=_KILL_CAUSE[kill_cause] if kill_cause else None,
        failure=_FAILURE[failure] if failure else None,
        exit_code=exit_code,
        infra_failures=infra_failures,
        results_dir=results_dir,
        reason=reason or "",
        progress=None if progress_total is None else RunProgress(progress_done, progress_total),
        progress_at=_time(progress_at),
        node=node,
    )


def _slot(row: tuple[Any, ...]) -> SlotView:
    (
        _,
        host,
        name,
        state,
        updated_at,
        case_id,
        attempt,
        task_id,
        task_label,
        task_created_at,
        reason,
    ) = row  # in SLOT_COLUMNS order
    return SlotView(
        host=host,
        name=name,
        state=_SLOT_STATE[state],
        updated_at=_fromiso(updated_at),
        case_id=case_id,
        attempt=attempt,
        task_id=task_id,
        task_label=task_label,
        task_created_at=_time(task_created_at),
        reason=reason or "",
    )


def _host(row: tuple[Any, ...]) -> HostView:
    _, name, address, state, updated_at, since, outage, reason = row  # HOST_COLUMNS order
    return HostView(
        name=name,
        address=address,
        state=_HOST_STATE[state],
        updated_at=_fromiso(updated_at),
        unreachable_since=_time(since),
        last_outage_seconds=outage,
        reason=reason or "",
    )


_ALARM_KIND = {k.value: k for k in AlarmKind}
_ALARM_STATE = {s.value: s for s in AlarmState}


def _alarm(row: tuple[Any, ...]) -> AlarmView:
    (aggregate_id, number, key, kind, subject, message, state, raised_at, case_id, host,
     acknowledged_by, acknowledged_at, cleared_at, reason) = row  # fmt: skip
    return AlarmView(
        alarm_id=aggregate_id, number=number, key=key, kind=_ALARM_KIND[kind], subject=subject,
        message=message, state=_ALARM_STATE[state], raised_at=_fromiso(raised_at),
        case_id=case_id, host=host, acknowledged_by=acknowledged_by,
        acknowledged_at=_time(acknowledged_at), cleared_at=_time(cleared_at), reason=reason,
    )  # fmt: skip


_NOTICE_KIND = {k.value: k for k in NoticeKind}


def _notification(row: tuple[Any, ...]) -> NotificationView:
    (aggregate_id, number, channel, kind, dedup_key, fact_at, case_id, notice_state, category,
     host, alarm_id, subject, log_tail, notice_reason, delivered, attempts, last_attempt_at,
     last_detail, delivered_at) = row  # fmt: skip
    notice = Notice(
        kind=_NOTICE_KIND[kind], dedup_key=dedup_key, at=_fromiso(fact_at),
        reason=notice_reason, case_id=case_id, state=notice_state, category=category,
        host=host, alarm_id=alarm_id, subject=subject, log_tail=log_tail,
    )  # fmt: skip
    return NotificationView(
        notification_id=aggregate_id, number=number, channel=channel, notice=notice,
        delivered=bool(delivered), attempts=attempts, last_attempt_at=_time(last_attempt_at),
        last_detail=last_detail, delivered_at=_time(delivered_at),
    )  # fmt: skip
