"""The composition root: a configuration in, a daemon wired to its parts out.

The only module that knows which adapter serves which port: ``mqi run`` and ``mqi demo``
build their daemon here, ``mqi doctor`` reaches the hosts through the same
``remote_hosts``. The views are given (``projections`` sits above the service), so is the
ledger (the command line opens it once, after checking the log is the right one).
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import msgspec

from mqi_es.adapters.backends import remote_host, slots_of
from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.local.progress import ProgressBoard, live_file
from mqi_es.adapters.local.systemd import Systemd
from mqi_es.adapters.notify.email import Email
from mqi_es.adapters.notify.webhook import Webhook
from mqi_es.adapters.watch.case_dir import CaseFolders
from mqi_es.adapters.watch.intake import Intake
from mqi_es.app.arrivals import ArrivalRecorder
from mqi_es.app.bus import MessageBus
from mqi_es.app.dispatch import Dispatcher
from mqi_es.app.leadership import Leadership, Timing
from mqi_es.app.ledger import Ledger
from mqi_es.app.notice_records import NoticePlan
from mqi_es.app.notifier import Notifier
from mqi_es.app.ports import Channel, RemoteHost, Views
from mqi_es.config import Config
from mqi_es.config.schema import PostgresDatabase
from mqi_es.core.backoff import Backoff
from mqi_es.core.commands import Command, RegisterHost, RegisterSlot
from mqi_es.core.notices import NoticeTopic
from mqi_es.core.policy import HostPolicy, Housekeeping, Policy
from mqi_es.core.states import CaseState
from mqi_es.runtime import QUERY_WAIT_SECONDS, Daemon, Pace

DAEMON = "daemon"  # the actor of everything the daemon records


def policy_from(config: Config) -> Policy:
    """The lifecycle's settings, read once from the configuration."""
    loop, tidy = config.main_loop, config.housekeeping
    return Policy(
        hosts=tuple(HostPolicy(h.name, slots_of(h), h.remote_base_dir) for h in config.hosts),
        timeout=timedelta(hours=loop.running_case_timeout_hours),
        max_attempts=loop.max_attempts,
        missing_grace=loop.missing_task_grace_polls,
        retry_backoff=timedelta(seconds=loop.retry_backoff_seconds),
        retry_backoff_cap=timedelta(seconds=loop.retry_backoff_cap_seconds),
        kill_confirm_timeout=timedelta(seconds=loop.kill_confirm_timeout_seconds),
        kill_resend_interval=timedelta(seconds=max(loop.sleep_interval_seconds, 5.0)),
        submit_settle=timedelta(
            seconds=max((h.command_timeout_seconds for h in config.hosts), default=30.0) + 10
        ),
        max_skew=timedelta(seconds=loop.max_clock_skew_seconds),
        stall_limits={
            CaseState(state): timedelta(minutes=minutes)
            for state, minutes in msgspec.structs.asdict(config.alarms.stall_minutes).items()
            if minutes is not None
        },
        host_down=timedelta(minutes=config.alarms.host_down_minutes),
        cycle_overdue=timedelta(minutes=config.alarms.cycle_overdue_minutes),
        node_disk_reserve=int(config.alarms.node_disk_free_gb * 10**9),
        housekeeping=Housekeeping(
            remove_finished_tasks=tidy.remove_finished_tasks,
            retention=timedelta(hours=tidy.remote_retention_hours),
            failed_retention=timedelta(hours=tidy.keep_failed_remote_hours),
        ),
        progress_interval=timedelta(seconds=loop.progress_interval_seconds)
        if loop.progress_interval_seconds > 0
        else None,
        progress_pattern=re.compile(loop.progress_pattern),
    )


def notice_plan(config: Config) -> NoticePlan:
    """What is told, and through which channels (``notifications``)."""
    told = config.notifications
    configured = {"webhook": told.webhook, "email": told.email}
    return NoticePlan(
        channels=tuple(name for name, section in configured.items() if section is not None),
        topics=frozenset(NoticeTopic(topic) for topic in told.on),
    )


def channels(config: Config) -> dict[str, Channel]:
    """The configured channels, by name."""
    found: dict[str, Channel] = {}
    webhook, email = config.notifications.webhook, config.notifications.email
    if webhook is not None:
        found["webhook"] = Webhook(
            webhook.url, token_file=webhook.token_file, timeout_seconds=webhook.timeout_seconds
        )
    if email is not None:
        found["email"] = Email(
            smtp_host=email.smtp_host, smtp_port=email.smtp_port, starttls=email.starttls,
            sender=email.sender, to=email.to, username=email.username,
            password_file=email.password_file, timeout_seconds=email.timeout_seconds,
        )  # fmt: skip
    return found


def remote_hosts(config: Config) -> dict[str, RemoteHost]:
    """Each configured host, reached through the adapter its ``backend`` names."""
    hours = config.main_loop.running_case_timeout_hours
    return {
        h.name: remote_host(h, results_globs=config.results.globs, timeout_hours=hours)
        for h in config.hosts
    }


def configuration(config: Config) -> list[Command]:
    """What the daemon registers at start: every configured host and its slots."""
    commands: list[Command] = []
    for host in config.hosts:
        commands.append(RegisterHost(name=host.name, address=host.host))
        commands += [RegisterSlot(host=host.name, slot=slot) for slot in slots_of(host)]
    return commands


def leadership(config: Config, ledger: Ledger) -> Leadership | None:
    """With a shared log (PostgreSQL), the lease this daemon leads or stands by under;
    with SQLite, None: the daemon alone writes its log (its data folder's lock)."""
    database = config.database
    if not isinstance(database, PostgresDatabase):
        return None
    from mqi_es.adapters.eventstore.lease import PostgresLease
    from mqi_es.adapters.eventstore.postgres import LogFollower

    timing = Timing.of(config.ha.takeover_seconds)
    name = config.ha.name or socket.gethostname()
    lease = PostgresLease(database, member=uuid.uuid4().hex, name=name, ttl=timing.ttl)
    recorder = ledger.recorder
    return Leadership(lease, timing, follower=lambda: LogFollower(recorder))  # type: ignore[arg-type]


def build_daemon(
    config: Config,
    ledger: Ledger,
    views: Views,
    hosts: Mapping[str, RemoteHost] | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    monotonic: Callable[[], float] = time.monotonic,
    check_log: Callable[[], None] = lambda: None,
    query_wait: float = QUERY_WAIT_SECONDS,
    systemd: Systemd | None = None,
) -> Daemon:
    """The daemon of ``config``, recording in ``ledger`` and reading ``views``; ``hosts``
    default to the configured ones (``remote_hosts``)."""
    hosts = dict(hosts) if hosts is not None else remote_hosts(config)
    policy = policy_from(config)
    progress = ProgressBoard(live_file(config.database.data_dir))
    bus = MessageBus(ledger, actor=DAEMON, views=views, metrics=progress.metrics)
    told = config.notifications
    notifier = Notifier(
        bus, views, channels(config), monotonic=monotonic,
        backoff=Backoff(base=told.retry_backoff_seconds, cap=told.retry_backoff_cap_seconds),
    )  # fmt: skip
    scanner = config.scanner
    dispatcher = Dispatcher(
        bus, hosts, views, policy,
        folders=CaseFolders(scanner.watch_path, ready_marker=scanner.ready_marker),
        results_dir=config.results.local_path, progress=progress, clock=clock,
        monotonic=monotonic,
    )  # fmt: skip
    arrivals = ArrivalRecorder(bus)

    def intake() -> Intake:
        return Intake(
            scanner.watch_path,
            quiescence=scanner.quiescence_period_seconds,
            force_polling=scanner.force_polling,
            poll_delay_ms=scanner.poll_delay_ms,
            ready_marker=scanner.ready_marker,
            rescan_interval=scanner.rescan_interval_seconds,
            is_known=arrivals.is_known,
            sink=arrivals,
        )

    pace = Pace(
        interval=config.main_loop.sleep_interval_seconds,
        reconnect_cap={h.name: h.reconnect_backoff_cap_seconds for h in config.hosts},
        query_wait=query_wait,
        disk_check=config.alarms.node_disk_check_minutes * 60,
    )
    return Daemon(
        bus, dispatcher, policy=policy, pace=pace, configuration=configuration(config),
        intake=intake, progress=progress, clock=clock, monotonic=monotonic,
        check_log=check_log, systemd=systemd or Systemd(), notifier=notifier,
    )  # fmt: skip
