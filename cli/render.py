"""How views and histories look on a terminal (rich) and to machines (JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mqi_es.adapters.local.progress import Transfer
from mqi_es.core.states import CaseState
from mqi_es.core.views import (
    AlarmView,
    CaseView,
    HostView,
    NotificationView,
    RefusalView,
    SlotView,
)

if TYPE_CHECKING:
    from projections.history import HistoryEntry

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

_STATE_STYLE = {
    "completed": "green",
    "failed": "red",
    "held": "yellow",
    "killing": "yellow",
    "quarantined": "red",
    "busy": "yellow",
    "unreachable": "red",
    "reachable": "green",
    "open": "red",
    "acknowledged": "yellow",
    "cleared": "green",
}


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else ""


def _styled(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def status_table(counts: dict[CaseState, int], lag: int) -> Table:
    table = Table(title="Cases", title_justify="left")
    table.add_column("state")
    table.add_column("count", justify="right")
    for state in CaseState:
        table.add_row(_styled(state.value), str(counts.get(state, 0)))
    table.add_row("[bold]total[/]", f"[bold]{sum(counts.values())}[/]")
    if lag:
        table.caption = f"views are {lag} events behind the log (a daemon is applying them)"
    return table


def cases_table(cases: Sequence[CaseView]) -> Table:
    table = Table(title=f"Cases ({len(cases)})", title_justify="left")
    columns = ("case", "state", "attempt", "gpu", "task", "progress", "detected", "updated",
               "reason")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for c in cases:
        state = c.state.value + (f" ({c.failure.value})" if c.failure else "")
        table.add_row(
            c.case_id,
            _styled(state) if not c.failure else f"[red]{state}[/]",
            str(c.attempt),
            f"{c.host}/{c.slot}" if c.host else "",
            str(c.task_id) if c.task_id is not None else "",
            str(c.progress) if c.progress else "",
            when(c.detected_at),
            when(c.updated_at),
            c.reason,
        )
    return table


def slots_table(slots: Sequence[SlotView]) -> Table:
    table = Table(title="GPU slots", title_justify="left")
    for column in ("slot", "state", "case", "attempt", "since", "reason"):
        table.add_column(column)
    for s in slots:
        table.add_row(
            s.key,
            _styled(s.state.value),
            s.case_id or "",
            str(s.attempt) if s.attempt is not None else "",
            when(s.updated_at),
            s.reason,
        )
    return table


def hosts_table(hosts: Sequence[HostView], skews: Mapping[str, float | None]) -> Table:
    """Each host's state and, while a daemon runs, its clock skew (node minus here)."""
    table = Table(title="Hosts", title_justify="left")
    for column in ("host", "address", "state", "since", "clock skew", "reason"):
        table.add_column(column, justify="right" if column == "clock skew" else "left")
    for h in hosts:
        since = h.unreachable_since or h.updated_at
        skew = skews.get(h.name)
        shown = "" if skew is None else f"{skew:+.1f} s"
        table.add_row(h.name, h.address, _styled(h.state.value), when(since), shown, h.reason)
    return table


def transfers_table(transfers: Sequence[Transfer]) -> Table:
    table = Table(title="Transfers in progress", title_justify="left")
    for column in ("case", "direction", "done", "total", "%"):
        table.add_column(column, justify="right" if column in ("done", "total", "%") else "left")
    for t in transfers:
        share = f"{100 * t.done / t.total:.0f}" if t.total else "100"
        table.add_row(t.case_id, t.direction, f"{t.done:,}", f"{t.total:,}", share)
    return table


def refusals_table(refusals: Sequence[RefusalView]) -> Table:
    table = Table(title="Folders refused in the watch folder", title_justify="left")
    for column in ("name", "reason", "since"):
        table.add_column(column)
    for r in refusals:
        table.add_row(r.name_repr, r.reason, when(r.refused_at))
    return table


def history_table(case_id: str, entries: Sequence[HistoryEntry]) -> Table:
    table = Table(title=f"History of case {case_id}", title_justify="left")
    for column in ("#", "time (UTC)", "subject", "event", "actor"):
        table.add_column(column, no_wrap=column in ("#", "event"))
    table.add_column("reason and details", overflow="fold", ratio=1)
    for e in entries:
        shown = {k: v for k, v in e.details.items() if v not in (None, "", [])}
        lines = [e.reason] if e.reason else []
        for key, value in shown.items():
            lines += _digest_lines(value) if key == "digests" else [f"{key}: {_short(value)}"]
        table.add_row(
            str(e.notification_id), when(e.time), e.subject, e.event, e.actor, "\n".join(lines)
        )
    return table


SHOWN_DIGESTS = 20  # per event in the table; `mqi history --json` has every one


def _digest_lines(digests: Sequence[Sequence[Any]]) -> list[str]:
    """One line per file: its SHA-256, size and path."""
    lines = [f"sha256 of {len(digests)} file(s):"]
    lines += [f"  {digest}  {size:,} B  {path}" for path, size, digest in digests[:SHOWN_DIGESTS]]
    if len(digests) > SHOWN_DIGESTS:
        lines.append(f"  ... and {len(digests) - SHOWN_DIGESTS} more (mqi history --json)")
    return lines


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def alarms_table(alarms: Sequence[AlarmView], *, title: str) -> Table:
    table = Table(title=f"{title} ({len(alarms)})", title_justify="left")
    for column in ("number", "state", "kind", "subject", "raised", "message"):
        table.add_column(column, overflow="fold")
    for a in alarms:
        state = _styled(a.state.value)
        if a.acknowledged_by:
            state += f" by {a.acknowledged_by}"
        table.add_row(
            str(a.number), state, a.kind.value, escape(a.subject), when(a.raised_at),
            escape(a.message),
        )  # fmt: skip
    return table


def notifications_table(found: Sequence[NotificationView]) -> Table:
    table = Table(title=f"Notifications ({len(found)})", title_justify="left")
    for column in ("number", "channel", "kind", "about", "delivery", "attempts", "last answer"):
        table.add_column(column, overflow="fold")
    for n in found:
        about = f"case {n.notice.case_id}" if n.notice.case_id else n.notice.subject
        delivery = (
            f"[green]delivered[/] {when(n.delivered_at)}" if n.delivered else "[yellow]due[/]"
        )
        table.add_row(
            str(n.number), n.channel, n.notice.kind.value, escape(about or ""), delivery,
            str(n.attempts), escape(n.last_detail),
        )  # fmt: skip
    return table


def last_cycle(at: datetime | None, now: datetime, late: bool) -> str:
    if at is None:
        return "last cycle: none completed yet (the daemon is starting)"
    ago = max(0.0, (now - at).total_seconds())
    said = f"last cycle: completed {ago:.0f} s ago ({when(at)})"
    if late:
        return (
            f"[bold red]{escape(said)}: OVERDUE[/] (more than alarms.cycle_overdue_minutes): "
            "the daemon's loop is stuck; see its log, systemd's watchdog restarts it"
        )
    return escape(said)
