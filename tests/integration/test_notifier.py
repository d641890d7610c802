"""Durable, at-least-once delivery by the daemon's notifier against real receivers on
loopback: a failure due on a webhook and on email, a receiver down for a while then up, a
500 answer, a slow receiver that never holds up other work, a restart that resumes what
was not delivered, and a crash between sending and recording that sends once more with
the same dedup_key. Every attempt is an event."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.adapters.notify.email import Email
from mqi_es.adapters.notify.webhook import Webhook
from mqi_es.app.bus import MessageBus
from mqi_es.app.ledger import Ledger
from mqi_es.app.notice_records import NoticePlan
from mqi_es.app.notifier import Notifier
from mqi_es.core.backoff import Backoff
from mqi_es.core.commands import RecordDelivery
from mqi_es.core.notices import NoticeTopic
from projections.history import case_history
from projections.live import LiveViews
from tests.integration.test_projections import run_cases

WAIT_SECONDS = 20.0


class Site:
    """A log with one failed case (c0), its views, and a notifier over ``channels``."""

    def __init__(self, root: Path, *channel_names: str, restarted: bool = False) -> None:
        plan = NoticePlan(channel_names, frozenset({NoticeTopic.FAILED}))
        self.ledger = Ledger(sqlite_event_store_env(root / "events.sqlite"), notices=plan)
        if not restarted:
            run_cases(self.ledger, 1)
        self.views = LiveViews(self.ledger, root / "views.sqlite")
        self.bus = MessageBus(self.ledger, actor="daemon", views=self.views)

    def notifier(self, channels, *, base: float = 0.05, bus=None) -> Notifier:
        return Notifier(
            bus or self.bus, self.views, {c.name: c for c in channels},
            backoff=Backoff(base=base, cap=base * 4),
        )  # fmt: skip

    def notifications(self):
        self.views.catch_up()
        with self.views.snapshot() as views:
            return views.notifications()


async def until(probe, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not probe():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_SECONDS} s")
        await asyncio.sleep(0.02)


def delivered(site: Site, channel: str) -> bool:
    return any(n.delivered for n in site.notifications() if n.channel == channel)


async def running(notifier: Notifier, probe, what: str) -> None:
    task = asyncio.create_task(notifier.run())
    try:
        await until(probe, what)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_failure_reaches_the_webhook_and_the_mailbox(tmp_path, http_receiver, smtp_receiver):
    site = Site(tmp_path, "webhook", "email")
    webhook = Webhook(http_receiver.url, timeout_seconds=5)
    email = Email(smtp_host=smtp_receiver.host, smtp_port=smtp_receiver.port, starttls=False,
                  sender="mqi@clinic.example", to=("oncall@clinic.example",))  # fmt: skip
    notifier = site.notifier([webhook, email])
    asyncio.run(running(notifier, lambda: delivered(site, "webhook") and delivered(site, "email"),
                        "both delivered"))  # fmt: skip
    (request,) = http_receiver.requests
    assert request.json["kind"] == "case_failed" and request.json["case_id"] == "c0"
    assert request.json["dedup_key"] == "case_failed:c0#1"
    (mail,) = smtp_receiver.messages
    assert mail.message["Subject"] == "MQI: case c0 failed (case_failure)"
    assert "mqi history c0" in mail.message.get_content()
    found = {n.channel: n for n in site.notifications()}
    assert found["webhook"].attempts == 1 and found["webhook"].last_detail == "HTTP 204"
    assert found["email"].last_detail.startswith("SMTP accepted")


def test_a_receiver_down_for_a_while_gets_it_once_it_is_up_and_each_try_is_recorded(
    tmp_path, http_receiver
):
    site = Site(tmp_path, "webhook")
    http_receiver.stop()
    notifier = site.notifier([Webhook(http_receiver.url, timeout_seconds=5)])

    async def scenario() -> None:
        task = asyncio.create_task(notifier.run())
        try:
            await until(lambda: site.notifications()[0].attempts >= 3, "three refused tries")
            http_receiver.start()
            notifier.wake()
            await until(lambda: delivered(site, "webhook"), "delivered once up")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    (done,) = site.notifications()
    assert done.attempts >= 4 and done.last_detail == "HTTP 204"
    assert len(http_receiver.requests) == 1  # nothing reached it while it was down
    with site.views.snapshot() as views:
        trail = case_history(site.views.feed, views, "c0")
    tries = [e.reason for e in trail if e.event == "Attempted"]
    assert len(tries) == done.attempts and tries[-1] == "HTTP 204"
    assert all("refused" in t for t in tries[:-1]), tries


def test_a_500_is_retried_with_the_same_dedup_key_until_it_is_accepted(tmp_path, http_receiver):
    site = Site(tmp_path, "webhook")
    http_receiver.status = 500
    http_receiver.answer = b"internal error"
    notifier = site.notifier([Webhook(http_receiver.url, timeout_seconds=5)])

    async def scenario() -> None:
        task = asyncio.create_task(notifier.run())
        try:
            await until(lambda: len(http_receiver.requests) >= 2, "two tries answered 500")
            http_receiver.status = 204
            await until(lambda: delivered(site, "webhook"), "accepted")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    keys = {r.json["dedup_key"] for r in http_receiver.requests}
    assert keys == {"case_failed:c0#1"} and len(http_receiver.requests) >= 3
    (done,) = site.notifications()
    assert done.last_detail == "HTTP 204"


def test_a_slow_receiver_times_out_without_holding_up_the_loop(tmp_path, http_receiver):
    site = Site(tmp_path, "webhook")
    http_receiver.delay = 3.0
    notifier = site.notifier([Webhook(http_receiver.url, timeout_seconds=0.5)], base=10)
    ticks = []

    async def scenario() -> None:
        async def ticker() -> None:
            while True:
                ticks.append(asyncio.get_running_loop().time())
                await asyncio.sleep(0.05)

        beat = asyncio.create_task(ticker())
        task = asyncio.create_task(notifier.run())
        try:
            await until(lambda: site.notifications()[0].attempts == 1, "one timed-out try")
        finally:
            task.cancel()
            beat.cancel()
            await asyncio.gather(task, beat, return_exceptions=True)

    asyncio.run(scenario())
    (slow,) = site.notifications()
    assert not slow.delivered and "timed out after 0.5 s" in slow.last_detail
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) >= 8 and max(gaps) < 0.4  # the loop kept running while it waited


def test_a_restart_resumes_undelivered_notifications(tmp_path, http_receiver):
    site = Site(tmp_path, "webhook")
    http_receiver.status = 503
    first = site.notifier([Webhook(http_receiver.url, timeout_seconds=5)])
    asyncio.run(running(first, lambda: site.notifications()[0].attempts >= 1, "one try"))
    http_receiver.status = 204
    site.views.close()
    again = Site(tmp_path, "webhook", restarted=True)  # a new ledger, views and notifier
    resumed = again.notifier([Webhook(http_receiver.url, timeout_seconds=5)])
    asyncio.run(running(resumed, lambda: delivered(again, "webhook"), "delivered after restart"))
    assert [r.json["dedup_key"] for r in http_receiver.requests] == ["case_failed:c0#1"] * 2


class LosesDeliveries(MessageBus):
    """A daemon that dies between sending and recording: the delivery is never recorded."""

    def execute(self, command):
        if isinstance(command, RecordDelivery) and command.delivered:
            raise OSError("No space left on device")
        return super().execute(command)


def test_a_delivery_that_was_not_recorded_is_sent_again_with_the_same_dedup_key(
    tmp_path, http_receiver
):
    site = Site(tmp_path, "webhook")
    losing = LosesDeliveries(site.ledger, actor="daemon", views=site.views)
    first = site.notifier([Webhook(http_receiver.url, timeout_seconds=5)], bus=losing)
    asyncio.run(running(first, lambda: len(http_receiver.requests) >= 1, "sent, not recorded"))
    assert not site.notifications()[0].delivered
    second = site.notifier([Webhook(http_receiver.url, timeout_seconds=5)])
    asyncio.run(running(second, lambda: delivered(site, "webhook"), "sent again, recorded"))
    requests = http_receiver.requests
    assert len(requests) == 2 and requests[0].body == requests[1].body


def test_no_channel_no_notifier_work(tmp_path):
    site = Site(tmp_path)
    assert site.notifications() == []
    asyncio.run(site.notifier([]).run())  # returns at once: nothing to deliver through
