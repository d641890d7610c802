"""Delivering the notifications that are due, in the background, at least once.

One worker per channel sends that channel's due notifications oldest first, one at a time,
and records each attempt (``RecordDelivery``) whatever its outcome. While a receiver is down
or refuses, the channel waits longer between attempts (capped backoff on the monotonic
clock) and tries the oldest again: a dead receiver costs one attempt per backoff, not one
per notification. The cycle never waits for any of this; the daemon wakes the workers after
each cycle. A restart finds the undelivered notifications due in the views and sends them
again: a receiver may see one twice (the same ``dedup_key``), never none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from mqi_es.adapters.local.repeats import Repeats
from mqi_es.app.bus import MessageBus
from mqi_es.app.ports import Channel, Views
from mqi_es.core.backoff import Backoff
from mqi_es.core.commands import RecordDelivery
from mqi_es.core.notices import Delivered, NotDelivered
from mqi_es.core.views import NotificationView

log = logging.getLogger("mqi.notify")

IDLE_SECONDS = 30.0  # how long a worker with nothing due waits unless woken


class Notifier:
    def __init__(
        self,
        bus: MessageBus,
        views: Views,
        channels: Mapping[str, Channel],
        *,
        backoff: Backoff,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus, self.views, self.channels = bus, views, dict(channels)
        self.monotonic = monotonic
        self._backoff = backoff
        self._repeats = Repeats(log)
        self._wake = {name: asyncio.Event() for name in self.channels}
        # Delivered here but perhaps not in the views yet: never sent twice by one process.
        self._delivered: set[str] = set()

    def wake(self) -> None:
        """Something may have become due (a cycle recorded facts)."""
        for event in self._wake.values():
            event.set()

    async def run(self) -> None:
        """Until cancelled: every channel's worker."""
        if not self.channels:
            return
        await asyncio.gather(*(self._work(name) for name in self.channels))

    async def deliver_due(self, name: str) -> bool:
        """Try the oldest notification due on channel ``name``; False if none is due."""
        due = self._oldest_due(name)
        if due is None:
            return False
        try:
            outcome = await self.channels[name].send(due.notice)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a channel: contained, and recorded as such
            log.exception("the %s channel failed unexpectedly", name)
            outcome = NotDelivered(f"our {name} channel failed ({type(exc).__name__})")
        delivered = isinstance(outcome, Delivered)
        if delivered:
            self._delivered.add(due.notification_id)
            self._backoff.succeeded(name)
            self._repeats.ended(name, f"notifications through {name} are delivered again")
        else:
            self._backoff.failed(name, self.monotonic())
            self._repeats.failed(name, "%s: not delivered (%s); trying again later", name,
                                 outcome.detail)  # fmt: skip
        self._record(due, delivered, outcome.detail)
        return True

    async def _work(self, name: str) -> None:
        wake = self._wake[name]
        while True:
            wait = IDLE_SECONDS
            if self._backoff.ready(name, self.monotonic()):
                try:
                    if await self.deliver_due(name):
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # e.g. the views cannot be read: later, quietly
                    self._backoff.failed(name, self.monotonic())
                    self._repeats.failed(("worker", name), "%s: cannot deliver now: %r", name,
                                         exc, level=logging.ERROR, exc_info=exc)  # fmt: skip
            else:
                wait = self._backoff.wait_left(name, self.monotonic())
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)

    def _oldest_due(self, name: str) -> NotificationView | None:
        self.views.catch_up()
        with self.views.snapshot() as views:
            due = views.notifications(due_only=True)
        self._delivered &= {n.notification_id for n in due}  # the rest the views know
        return next(
            (n for n in due if n.channel == name and n.notification_id not in self._delivered),
            None,
        )

    def _record(self, due: NotificationView, delivered: bool, detail: str) -> None:
        command = RecordDelivery(
            notification_id=due.notification_id, delivered=delivered, detail=detail
        )
        try:
            self.bus.execute(command)
        except Exception as exc:  # a full disk: the attempt is lost, the notice stays due
            self._repeats.failed(("record", due.channel), "%s: cannot record a delivery: %r",
                                 due.channel, exc, level=logging.ERROR)  # fmt: skip
        else:
            self._repeats.ended(("record", due.channel))
            if delivered:
                log.info("notification %s delivered through %s", due.notice.dedup_key, due.channel)
