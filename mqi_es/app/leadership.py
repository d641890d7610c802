"""One leader per log, the others standing by: who acts, and when to stop acting.

A standby keeps its views following the shared log (woken by the store's notifications)
and asks for the lease now and then. The one that wins leads under the new term: it runs
the daemon (which recovers every case from the log, exactly as after a restart) while the
lease is renewed beside it. The leader stops acting as soon as it cannot be sure the lease
is still its own: when a renewal says so, or when its own monotonic clock says the lease
may have lapsed (a renewal that did not answer proves nothing, but the standby will not
wait longer than the lease). Its records are refused by the store's fence past that point
anyway (``Ledger.lead``); stopping early keeps it from acting on the nodes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mqi_es.app.ports import Follower, Lease
from mqi_es.core.errors import StoreUnreachable

log = logging.getLogger("mqi.leadership")


@dataclass(frozen=True, slots=True)
class Timing:
    """The lease's rhythm, from ``ha.takeover_seconds`` (T): the lease lasts 0.6 T, is
    renewed every T/10 and asked for every T/15, so a standby takes over at most
    0.6 T + T/15 after the leader's last renewal, leaving the rest of T to start."""

    ttl: float
    renew_every: float
    campaign_every: float
    margin: float  # the leader stops this long before its lease could lapse

    @classmethod
    def of(cls, takeover_seconds: float) -> Timing:
        t = takeover_seconds
        return cls(ttl=0.6 * t, renew_every=t / 10, campaign_every=t / 15, margin=t / 20)


Lead = Callable[[int, asyncio.Event], Awaitable[None]]


class Leadership:
    """Runs ``lead(term, stop_leading)`` whenever this daemon holds the lease, and
    ``follow()`` (bring the views up to date) while it stands by, until ``stop``
    (``run``)."""

    def __init__(
        self,
        lease: Lease,
        timing: Timing,
        *,
        follower: Callable[[], Follower],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease, self.timing = lease, timing
        self._make_follower = follower
        self.monotonic = monotonic
        self.term: int | None = None  # the term this daemon leads under now
        self._follow_failing = False

    async def run(
        self,
        stop: asyncio.Event,
        lead: Lead,
        follow: Callable[[], object],
        alive: Callable[[str], None] = lambda status: None,
    ) -> None:
        """``alive(status)`` is told after each turn of standing by (systemd's watchdog
        hears that a standby is well too)."""
        try:
            while not stop.is_set():
                term = await self._stand_by(stop, follow, alive)
                if term is None:
                    break
                await self._lead(term, stop, lead)
        finally:
            with contextlib.suppress(StoreUnreachable):
                await asyncio.to_thread(self.lease.leave)
            self.lease.close()

    async def _stand_by(
        self, stop: asyncio.Event, follow: Callable[[], object], alive: Callable[[str], None]
    ) -> int | None:
        """Follow the log until the lease is ours (its term) or ``stop`` (None)."""
        follower: Follower | None = None
        said = False
        try:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.lease.seen)
                    term = await asyncio.to_thread(self.lease.campaign)
                except StoreUnreachable as exc:
                    if not said:
                        log.warning("standing by: %s; asking again", exc)
                    said, term = True, None
                else:
                    said = False
                if term is not None:
                    return term
                if follower is None:
                    follower = self._open()
                if follower is not None:
                    await asyncio.to_thread(follower.wait, self.timing.campaign_every)
                else:
                    await _wait(stop, self.timing.campaign_every)
                self._contained(follow)
                if not said:
                    alive("standing by: another daemon leads the log")
                if follower is not None and follower.broken:
                    follower.close()  # made again at the next turn
                    follower = None
            return None
        finally:
            if follower is not None:
                follower.close()

    async def _lead(self, term: int, stop: asyncio.Event, lead: Lead) -> None:
        log.warning("leading the log at term %d", term)
        self.term = term
        leading = asyncio.Event()
        valid_until = self.monotonic() + self.timing.ttl - self.timing.margin
        renewing = asyncio.create_task(self._renew(term, valid_until, leading), name="lease")
        stopping = asyncio.create_task(_relay(stop, leading))
        try:
            await lead(term, leading)
        except Exception as exc:  # e.g. the store went away as it started: stand by again
            log.error("leading at term %d failed: %r; standing by", term, exc, exc_info=exc)
        finally:
            leading.set()
            for task in (renewing, stopping):
                task.cancel()
            await asyncio.gather(renewing, stopping, return_exceptions=True)
            self.term = None
            if stop.is_set():
                with contextlib.suppress(StoreUnreachable):
                    await asyncio.to_thread(self.lease.release, term)
                log.warning("stopped leading at term %d: the lease is released", term)
            else:
                log.warning("stopped leading at term %d: standing by", term)

    async def _renew(self, term: int, valid_until: float, leading: asyncio.Event) -> None:
        """Renew every ``renew_every``; end leadership when the lease is lost or may
        have lapsed (measured from the start of the last renewal that succeeded)."""
        while not leading.is_set():
            await _wait(leading, min(self.timing.renew_every, valid_until - self.monotonic()))
            started = self.monotonic()
            left = valid_until - started
            if leading.is_set():
                return
            if left <= 0:
                log.error("the lease of term %d may have lapsed (not renewed in time): "
                          "leading stops", term)  # fmt: skip
                break
            try:
                renewed = await asyncio.wait_for(
                    asyncio.to_thread(self._renew_once, term), timeout=left
                )
            except (TimeoutError, StoreUnreachable) as exc:
                left = max(0.0, valid_until - self.monotonic())
                log.warning("the lease of term %d was not renewed (%s); %.1f s left", term,
                            exc or "no answer", left)  # fmt: skip
                continue
            if not renewed:
                log.error("the lease of term %d is not ours any more: leading stops", term)
                break
            valid_until = started + self.timing.ttl - self.timing.margin
        leading.set()

    def _renew_once(self, term: int) -> bool:
        renewed = self.lease.renew(term)
        if renewed:
            self.lease.seen()
        return renewed

    def _open(self) -> Follower | None:
        try:
            return self._make_follower()
        except Exception as exc:  # the follower is a help, never a condition
            log.warning("cannot follow the log's notifications (%r): polling instead", exc)
            return None

    def _contained(self, action: Callable[[], object]) -> None:
        """``action``'s failure said once until it succeeds again (an outage is long)."""
        try:
            action()
        except Exception as exc:
            if not self._follow_failing:
                log.warning("standing by: the views could not follow the log (%r)", exc)
            self._follow_failing = True
        else:
            if self._follow_failing:
                log.info("standing by: the views follow the log again")
            self._follow_failing = False


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
