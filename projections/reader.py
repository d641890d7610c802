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

from mqi_es.core.errors import MqiError
from mqi_es.core.states import (
    CaseState,
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
from projections.rows import (
    alarm_row,
    case_row,
    fromiso,
    host_row,
    notification_row,
    slot_row,
)
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
        return [case_row(row) for row in rows]

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
        return [case_row(row) for row in rows], total

    def case(self, case_id: str) -> CaseView | None:
        row = self._c.execute(
            f"SELECT {', '.join(CASE_COLUMNS)} FROM cases WHERE case_id = ?",  # noqa: S608
            (case_id,),
        ).fetchone()
        return case_row(row) if row else None

    def case_counts(self) -> dict[CaseState, int]:
        rows = self._c.execute("SELECT state, count(*) FROM cases GROUP BY state")
        return {CaseState(state): count for state, count in rows}

    def slots(self) -> list[SlotView]:
        rows = self._c.execute(
            f"SELECT {', '.join(SLOT_COLUMNS)} FROM slots ORDER BY host, name"  # noqa: S608
        )
        return [slot_row(row) for row in rows]

    def hosts(self) -> list[HostView]:
        rows = self._c.execute(
            f"SELECT {', '.join(HOST_COLUMNS)} FROM hosts ORDER BY name"  # noqa: S608
        )
        return [host_row(row) for row in rows]

    def refusals(self) -> list[RefusalView]:
        rows = self._c.execute("SELECT name_repr, reason, refused_at FROM refusals ORDER BY 3")
        return [RefusalView(name_repr=n, reason=r, refused_at=fromiso(t)) for n, r, t in rows]

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
        return [alarm_row(row) for row in rows]

    def alarm(self, number: int) -> AlarmView | None:
        row = self._c.execute(
            f"SELECT {', '.join(ALARM_COLUMNS)} FROM alarms WHERE number = ?",  # noqa: S608
            (number,),
        ).fetchone()
        return alarm_row(row) if row else None

    def notifications(self, *, due_only: bool = False) -> list[NotificationView]:
        """Notifications, oldest first; ``due_only``: those not delivered yet."""
        where = " WHERE delivered = 0" if due_only else ""
        rows = self._c.execute(
            f"SELECT {', '.join(NOTIFICATION_COLUMNS)} FROM notifications{where}"  # noqa: S608
            " ORDER BY number"
        )
        return [notification_row(row) for row in rows]

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
                ended_at=fromiso(since),
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
