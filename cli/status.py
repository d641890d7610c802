"""`mqi status`: open alarms first, then cases per state, GPU slots and host reachability.

Exit codes: 0 all is well, 3 an alarm is open (raised and not acknowledged), 4 the daemon
runs but its last cycle completed longer ago than ``alarms.cycle_overdue_minutes`` (its loop
is stuck: systemd's watchdog restarts it), 1 the log or views cannot be trusted, 2 the
configuration cannot be used.

The command operators and monitoring scripts run most often, so it is kept cheap to
start: it reads the views and loads rich only to draw tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cli.alarms import OPEN_ALARMS_EXIT, open_alarms
from cli.context import Context
from cli.json_output import as_json, emit_json
from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.local.lock import Holder
from mqi_es.adapters.local.progress import Live

if TYPE_CHECKING:
    from mqi_es.adapters.eventstore.lease import Standing
from mqi_es.core.states import CaseState
from mqi_es.core.views import AlarmView, HostView, RefusalView, SlotView

OVERDUE_EXIT = 4


def overdue(last_cycle_at: datetime | None, now: datetime, limit: timedelta) -> bool:
    return last_cycle_at is not None and now - last_cycle_at > limit


def overdue_limit(context: Context) -> timedelta:
    """How long after the last cycle the daemon is late (``alarms.cycle_overdue_minutes``)."""
    return timedelta(minutes=context.config.alarms.cycle_overdue_minutes)


@dataclass(frozen=True)
class StatusReport:
    """What `mqi status` shows, and its exit code (also `/api/status` of `mqi web`)."""

    counts: dict[CaseState, int]
    slots: list[SlotView]
    hosts: list[HostView]
    refusals: list[RefusalView]
    standing: list[AlarmView]  # not cleared: open or acknowledged
    alarms: list[AlarmView]  # open
    lag: int
    holder: Holder | None
    live: Live
    late: bool
    leadership: Leadership | None = None  # a shared log's leader and standbys

    @property
    def code(self) -> int:
        return OVERDUE_EXIT if self.late else OPEN_ALARMS_EXIT if self.alarms else 0

    def as_json(self) -> dict[str, Any]:
        return {
            "open_alarms": as_json(self.alarms),
            "acknowledged_alarms": as_json([a for a in self.standing if a not in self.alarms]),
            "cases": {state.value: self.counts.get(state, 0) for state in CaseState},
            "gpus": as_json(self.slots),
            "hosts": [
                {**host, "clock_skew_seconds": self.live.skews.get(host["name"])}
                for host in as_json(self.hosts)
            ],
            "transfers": as_json(self.live.transfers),
            "refused_folders": as_json(self.refusals),
            "views_behind_log": self.lag,
            "daemon": self.holder.describe() if self.holder else None,
            "last_cycle_at": self.live.last_cycle_at and self.live.last_cycle_at.isoformat(),
            "last_cycle_overdue": self.late,
            "leadership": self.leadership.as_json() if self.leadership else None,
        }


@dataclass(frozen=True)
class Leadership:
    """Who leads a shared log, since when, and who stands by (or why it is not known)."""

    standing: Standing | None
    problem: str | None = None

    def leads_here(self, holder: Holder | None) -> bool:
        """Whether the daemon of this data folder is the leader."""
        found = self.standing
        if holder is None or found is None or found.leader is None:
            return False
        return any(m.member == found.leader.member and m.pid == holder.pid for m in found.members)

    def as_json(self) -> dict[str, Any]:
        found = self.standing
        if found is None:
            return {"leader": None, "standbys": [], "problem": self.problem}
        leader = found.leader
        pids = {m.member: m.pid for m in found.members}
        return {
            "leader": leader and {
                "name": leader.name, "term": leader.term, "since": leader.since.isoformat(),
                "pid": pids.get(leader.member), "lease_expires_at": leader.expires_at.isoformat(),
            },
            "standbys": [
                {"name": m.name, "pid": m.pid, "since": m.started_at.isoformat(),
                 "seen_at": m.seen_at.isoformat()}
                for m in found.standbys()
            ],
            "problem": self.problem,
        }  # fmt: skip

    def describe(self) -> str:
        found = self.standing
        if found is None:
            return f"leadership: not known ({self.problem})"
        leader = found.leader
        led = (
            f"{leader.name} leads (term {leader.term}, since {leader.since:%Y-%m-%d %H:%M:%S %Z})"
            if leader
            else "nobody leads (the lease has lapsed)"
        )
        standbys = ", ".join(m.name for m in found.standbys()) or "none"
        return f"leadership: {led}; standing by: {standbys}"


def leadership(context: Context) -> Leadership | None:
    """The leadership of a shared log (None for SQLite, which one daemon alone writes)."""
    from mqi_es.config.schema import PostgresDatabase

    database = context.config.database
    if not isinstance(database, PostgresDatabase):
        return None
    from mqi_es.adapters.eventstore.lease import PostgresLease
    from mqi_es.app.leadership import Timing
    from mqi_es.core.errors import StoreUnreachable

    ttl = Timing.of(context.config.ha.takeover_seconds).ttl
    lease = PostgresLease(database, member="", name="", ttl=ttl)  # reads, never campaigns
    try:
        return Leadership(lease.standing(seen_within=2 * ttl))
    except StoreUnreachable as exc:
        return Leadership(None, problem=str(exc))
    finally:
        lease.close()


def status_report(context: Context) -> StatusReport:
    with context.views().snapshot() as views:
        counts, slots, hosts = views.case_counts(), views.slots(), views.hosts()
        refusals = views.refusals()
        standing = views.alarms(standing_only=True)
    holder, live = context.daemon()
    led = leadership(context)
    cycling = holder is not None and (led is None or led.leads_here(holder))  # a standby waits
    late = cycling and overdue(live.last_cycle_at, utcnow(), overdue_limit(context))
    return StatusReport(
        counts=counts, slots=slots, hosts=hosts, refusals=refusals, standing=standing,
        alarms=open_alarms(standing), lag=context.lag(), holder=holder, live=live, late=late,
        leadership=led,
    )  # fmt: skip


def show_status(context: Context, *, json: bool) -> int:
    """Show the status; returns the exit code."""
    report = status_report(context)
    if json:
        emit_json(report.as_json())
        return report.code
    from cli import render

    alarms, standing, live, holder = report.alarms, report.standing, report.live, report.holder
    if alarms:
        render.console.print(render.alarms_table(alarms, title="Open alarms"))
        render.console.print("acknowledge with `mqi ack NUMBER`", markup=False)

    render.console.print(render.status_table(report.counts, report.lag))
    render.console.print(render.slots_table(report.slots))
    render.console.print(render.hosts_table(report.hosts, live.skews))
    if live.transfers:
        render.console.print(render.transfers_table(live.transfers))
    if report.refusals:
        render.console.print(render.refusals_table(report.refusals))
    if len(standing) > len(alarms):
        render.console.print(
            f"{len(standing) - len(alarms)} acknowledged alarm(s) still stand (`mqi alarms`)",
            markup=False,
        )
    render.console.print(
        f"daemon: {holder.describe()}" if holder else "daemon: not running", markup=False
    )
    if report.leadership is not None:
        render.console.print(report.leadership.describe(), markup=False)
    if holder is not None:
        render.console.print(render.last_cycle(live.last_cycle_at, utcnow(), report.late))
    return report.code
