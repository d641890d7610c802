"""The leadership loop against an in-memory lease whose answers a test sets: when it leads,
when it stops leading, and that nothing in the store's absence stops it for good. The
lease itself is tested on a real PostgreSQL server (tests/integration/test_ledger.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mqi_es.app.leadership import Leadership, Timing
from mqi_es.core.errors import StoreUnreachable

TIMING = Timing.of(1.0)  # a 0.6 s lease, renewed every 0.1 s


class MemoryLease:
    """``reachable`` False: every call raises StoreUnreachable; ``taken``: another daemon
    holds the lease (a renewal says so); ``hang``: calls never answer while set."""

    def __init__(self) -> None:
        self.reachable, self.taken = True, False
        self.hang = threading.Event()
        self.term = 0
        self.released: list[int] = []

    def _call(self) -> None:
        while self.hang.is_set():
            threading.Event().wait(0.01)
        if not self.reachable:
            raise StoreUnreachable("the event store cannot be reached (test)")

    def campaign(self) -> int | None:
        self._call()
        if self.taken:
            return None
        self.term += 1
        return self.term

    def renew(self, term: int) -> bool:
        self._call()
        return not self.taken and term == self.term

    def release(self, term: int) -> None:
        self._call()
        self.released.append(term)

    def seen(self) -> None:
        self._call()

    def leave(self) -> None:
        self._call()

    def close(self) -> None:
        pass


class NoFollower:
    broken = False

    def wait(self, timeout: float) -> bool:
        threading.Event().wait(timeout)
        return False

    def close(self) -> None:
        pass


def run(lease: MemoryLease, lead, *, seconds: float) -> list[str]:
    """Run the loop for ``seconds``; returns what happened, in order."""
    said: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()
        leadership = Leadership(lease, TIMING, follower=NoFollower)

        async def leading(term: int, until: asyncio.Event) -> None:
            said.append(f"lead {term}")
            await lead(term, until, said)
            said.append(f"end {term}")

        task = asyncio.create_task(leadership.run(stop, leading, follow=lambda: None))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    return said


async def until_told(term: int, until: asyncio.Event, said: list[str]) -> None:
    await until.wait()


def test_a_lone_daemon_leads_until_stopped_and_releases_its_lease() -> None:
    lease = MemoryLease()
    assert run(lease, until_told, seconds=0.5) == ["lead 1", "end 1"]
    assert lease.released == [1]


def test_leading_stops_at_once_when_a_renewal_says_the_lease_is_taken() -> None:
    lease = MemoryLease()

    async def lead(term: int, until: asyncio.Event, said: list[str]) -> None:
        lease.taken = True
        await asyncio.wait_for(until.wait(), TIMING.renew_every * 3)

    said = run(lease, lead, seconds=0.5)
    assert said == ["lead 1", "end 1"]  # stood by afterwards: the lease is another's
    assert lease.released == []


@pytest.mark.parametrize("fault", ["unreachable", "no answer"])
def test_a_leader_that_cannot_renew_stops_before_its_lease_could_lapse(fault: str) -> None:
    lease = MemoryLease()
    timings: list[float] = []

    async def lead(term: int, until: asyncio.Event, said: list[str]) -> None:
        if term > 1:
            await until.wait()
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        if fault == "unreachable":
            lease.reachable = False
        else:
            lease.hang.set()
        await asyncio.wait_for(until.wait(), TIMING.ttl * 2)
        timings.append(loop.time() - started)
        lease.reachable = True
        lease.hang.clear()

    said = run(lease, lead, seconds=1.5)
    assert said[:2] == ["lead 1", "end 1"]
    assert timings[0] <= TIMING.ttl - TIMING.margin + 0.05  # never past the lease
    assert "lead 2" in said  # the store answers again: it leads again, under a new term


def test_a_store_that_cannot_be_reached_at_first_only_delays_leadership() -> None:
    lease = MemoryLease()
    lease.reachable = False

    async def lead(term: int, until: asyncio.Event, said: list[str]) -> None:
        await until.wait()

    async def main() -> list[str]:
        said: list[str] = []
        stop = asyncio.Event()

        async def leading(term: int, until: asyncio.Event) -> None:
            said.append(f"lead {term}")
            await until.wait()

        task = asyncio.create_task(
            Leadership(lease, TIMING, follower=NoFollower).run(stop, leading, lambda: None)
        )
        await asyncio.sleep(0.3)
        assert said == []
        lease.reachable = True
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 5)
        return said

    assert asyncio.run(main()) == ["lead 1"]


def test_a_failure_while_leading_is_contained_and_it_stands_by_again() -> None:
    lease = MemoryLease()

    async def lead(term: int, until: asyncio.Event, said: list[str]) -> None:
        if term == 1:
            raise RuntimeError("the views could not be opened")
        await until.wait()

    said = run(lease, lead, seconds=0.5)
    assert said[0] == "lead 1" and "lead 2" in said
