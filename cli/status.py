"""`mqi status`: open alarms first, then cases per state, GPU slots and host reachability.

Exit codes: 0 all is well, 3 an alarm is open (raised and not acknowledged), 4 the daemon
runs but its last cycle completed longer ago than ``alarms.cycle_overdue_minutes`` (its loop
is stuck: systemd's watchdog restarts it), 1 the log or views cannot be trusted, 2 the
configuration cannot be used.

The command operators and monitoring scripts run most often, so it is kept cheap to
start: it reads the views and loads rich only to draw tables.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cli.alarms import OPEN_ALARMS_EXIT, open_alarms
from cli.context import Context
from cli.json_output import as_json, emit_json
from mqi_es.adapters.local.clock import utcnow
from mqi_es.core.states import CaseState

OVERDUE_EXIT = 4


def overdue(last_cycle_at: datetime | None, now: datetime, limit: timedelta) -> bool:
    return last_cycle_at is not None and now - last_cycle_at > limit


def show_status(context: Context, *, json: bool) -> int:
    """Show the status; returns the exit code."""
    with context.views().snapshot() as views:
        counts, slots, hosts = views.case_counts(), views.slots(), views.hosts()
        refusals = views.refusals()
        standing = views.alarms(standing_only=True)
    alarms = open_alarms(standing)
    code = OPEN_ALARMS_EXIT if alarms else 0
    lag = context.lag()
    holder = context.lock.holder()
    live = context.live()
    transfers = live.transfers
    limit = timedelta(minutes=context.config.alarms.cycle_overdue_minutes)
    late = holder is not None and overdue(live.last_cycle_at, utcnow(), limit)
    code = OVERDUE_EXIT if late else code
    if json:
        emit_json(
            {
                "open_alarms": as_json(alarms),
                "acknowledged_alarms": as_json([a for a in standing if a not in alarms]),
                "cases": {state.value: counts.get(state, 0) for state in CaseState},
                "gpus": as_json(slots),
                "hosts": [
                    {**host, "clock_skew_seconds": live.skews.get(host["name"])}
                    for host in as_json(hosts)
                ],
                "transfers": as_json(transfers),
                "refused_folders": as_json(refusals),
                "views_behind_log": lag,
                "daemon": holder.describe() if holder else None,
                "last_cycle_at": live.last_cycle_at and live.last_cycle_at.isoformat(),
                "last_cycle_overdue": late,
            }
        )
        return code
    from cli import render

    if alarms:
        render.console.print(render.alarms_table(alarms, title="Open alarms"))
        render.console.print("acknowledge with `mqi ack NUMBER`", markup=False)

    render.console.print(render.status_table(counts, lag))
    render.console.print(render.slots_table(slots))
    render.console.print(render.hosts_table(hosts, live.skews))
    if transfers:
        render.console.print(render.transfers_table(transfers))
    if refusals:
        render.console.print(render.refusals_table(refusals))
    if len(standing) > len(alarms):
        render.console.print(
            f"{len(standing) - len(alarms)} acknowledged alarm(s) still stand (`mqi alarms`)",
            markup=False,
        )
    render.console.print(
        f"daemon: {holder.describe()}" if holder else "daemon: not running", markup=False
    )
    if holder is not None:
        render.console.print(render.last_cycle(live.last_cycle_at, utcnow(), late))
    return code
