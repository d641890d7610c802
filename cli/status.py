"""`mqi status`: cases per state, GPU slots and host reachability.

The command operators and monitoring scripts run most often, so it is kept cheap to
start: it reads the views and loads rich only to draw tables.
"""

from __future__ import annotations

from cli.context import Context
from cli.json_output import as_json, emit_json
from mqi_es.adapters.local.progress import live_file, read_live
from mqi_es.core.states import CaseState


def show_status(context: Context, *, json: bool) -> None:
    with context.views().snapshot() as views:
        counts, slots, hosts = views.case_counts(), views.slots(), views.hosts()
        refusals = views.refusals()
    lag = context.lag()
    holder = context.lock.holder()
    live = read_live(live_file(context.config.database.path), holder.pid if holder else None)
    transfers = live.transfers
    if json:
        emit_json(
            {
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
            }
        )
        return
    from cli import render

    render.console.print(render.status_table(counts, lag))
    render.console.print(render.slots_table(slots))
    render.console.print(render.hosts_table(hosts, live.skews))
    if transfers:
        render.console.print(render.transfers_table(transfers))
    if refusals:
        render.console.print(render.refusals_table(refusals))
    render.console.print(
        f"daemon: {holder.describe()}" if holder else "daemon: not running", markup=False
    )
