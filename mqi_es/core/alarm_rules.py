"""Alarms judged every cycle from the views and the shell's last word: a case that stays in
one state too long, a host unusable for too long, results that cannot be written here.
They clear as soon as the case moves on, the host answers or a fetch succeeds. And the
daemon's own loop: cycles further apart than allowed; a node's disk filling up. Pure."""

from __future__ import annotations

from mqi_es.core.cycle import Cycle
from mqi_es.core.states import AlarmKind, CaseState, HostState

_DOWN = frozenset({HostState.UNREACHABLE, HostState.QUEUE_DOWN, HostState.UNREADABLE})
_DOWN_WORDS = {
    HostState.UNREACHABLE: "unreachable",
    HostState.QUEUE_DOWN: "reachable but its queue service is down",
    HostState.UNREADABLE: "answering with a status that cannot be read",
}


def watch_for_stalls(cycle: Cycle) -> None:
    for case in cycle.world.cases:
        limit = cycle.policy.stall_limits.get(case.state)
        if limit is None or cycle.now - case.state_since <= limit:
            continue
        minutes = (cycle.now - case.state_since).total_seconds() / 60
        cycle.alarm(
            AlarmKind.CASE_STALLED,
            f"case {case.case_id} has been {case.state} for {minutes:.0f} min (more than "
            f"{limit.total_seconds() / 60:g}): {case.reason or 'no reason recorded'}",
            key=f"stalled:{case.case_id}:{case.state}:{case.state_since.isoformat()}",
            case=case,
            from_views=True,
        )


def watch_hosts(cycle: Cycle) -> None:
    for host in cycle.world.hosts:
        since = host.unreachable_since
        if host.name not in cycle.policy.hosts_by_name or host.state not in _DOWN or not since:
            continue
        if cycle.now - since <= cycle.policy.host_down:
            continue
        minutes = (cycle.now - since).total_seconds() / 60
        cycle.alarm(
            AlarmKind.HOST_DOWN,
            f"host {host.name} has been {_DOWN_WORDS[host.state]} for {minutes:.0f} min: "
            f"{host.reason or 'no reason recorded'}; its cases wait, none is failed for it",
            key=f"host-down:{host.name}:{since.isoformat()}",
            subject=f"host {host.name}",
            from_views=True,
        )


def watch_results(cycle: Cycle) -> None:
    for case in cycle.world.cases:
        why = cycle.world.unwritable.get(case.case_id)
        if why is None or case.state is not CaseState.RETRIEVING:
            continue
        cycle.alarm(
            AlarmKind.RESULTS_UNWRITABLE,
            f"the results of case {case.case_id} {why.removeprefix('results ')}; they stay "
            "safe on the node and are fetched again until they can be written",
            key=f"unwritable:{case.case_id}#{case.attempt}",
            case=case,
            from_views=True,
        )


def watch_the_loop(cycle: Cycle) -> None:
    """Cycles further apart (on the monotonic clock) than ``cycle_overdue``: something held
    the daemon's loop (a stuck disk, a starved machine). Raised for the record once the loop
    runs again; a loop that never comes back is restarted by systemd's watchdog."""
    last = cycle.memory.clock
    limit = cycle.policy.cycle_overdue.total_seconds()
    if last is None or cycle.mono - last[1] <= limit:
        return
    cycle.alarm(
        AlarmKind.CYCLE_OVERDUE,
        f"the daemon's cycle ran {cycle.mono - last[1]:.0f} s after the one before (more "
        f"than {limit:g} s): its loop was held; see the log around this time",
        key=f"cycle-overdue:{cycle.now.isoformat()}",
    )


def watch_disks(cycle: Cycle) -> None:
    reserve = cycle.policy.node_disk_reserve
    for host, free in cycle.world.disk_free.items():
        if host not in cycle.policy.hosts_by_name or free >= reserve:
            continue
        cycle.alarm(
            AlarmKind.NODE_DISK_LOW,
            f"host {host} has {free / 1e9:.1f} GB free where its cases go (less than "
            f"alarms.node_disk_free_gb, {reserve / 1e9:g}): no case is sent there until "
            "there is room; cases wait, none fails for it",
            key=f"disk-low:{host}",
            host=host,
            subject=f"host {host}",
        )
