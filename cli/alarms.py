"""`mqi alarms` and `mqi ack`: what an operator must look at, and saying it was seen."""

from __future__ import annotations

from cli.context import Context
from cli.json_output import as_json, emit_json
from mqi_es.core.commands import AcknowledgeAlarm
from mqi_es.core.errors import AlarmNotFound
from mqi_es.core.states import AlarmState
from mqi_es.core.views import AlarmView

# `mqi status` exits with this while an alarm is open (raised, not acknowledged).
OPEN_ALARMS_EXIT = 3


def open_alarms(alarms: list[AlarmView]) -> list[AlarmView]:
    return [a for a in alarms if a.state is AlarmState.OPEN]


def show_alarms(context: Context, *, all: bool, json: bool) -> None:
    with context.views().snapshot() as views:
        found = views.alarms(standing_only=not all)
    if json:
        emit_json(as_json(found))
        return
    from cli import render

    if not found:
        render.console.print("no alarm" if all else "no standing alarm", markup=False)
        return
    render.console.print(render.alarms_table(found, title="Alarms" if all else "Standing alarms"))


def acknowledge(context: Context, number: int, reason: str) -> AlarmView:
    """Acknowledge alarm ``number`` as the operator; returns it as it was."""
    with context.views().snapshot() as views:
        alarm = views.alarm(number)
    if alarm is None:
        raise AlarmNotFound(f"no alarm number {number} (`mqi alarms --all` lists them)")
    context.bus.execute(AcknowledgeAlarm(alarm_id=alarm.alarm_id, reason=reason))
    return alarm
