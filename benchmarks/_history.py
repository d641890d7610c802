"""A realistic event history of a given size, built quickly, for the benchmarks.

Two GPU nodes with four GPUs each run one case after another. A case records nine
events (detection, submission with the slot's allocation, upload, enqueue, start,
remote success with the slot's release, completion or, one case in ten, failure).
Every ``OUTAGE_EVERY`` cases a node drops off during a run: the host's outage, the
abandoned attempt and its release, then a second attempt. The last case on each GPU is
left running, so the views end with busy slots, like a live installation.

Aggregates are changed directly and saved in batches, as the Ledger's commands would
record them but without its per-command transaction: tens of times faster.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mqi_es.adapters.eventstore.sqlite import sqlite_event_store_env
from mqi_es.app.ledger import Ledger
from mqi_es.core.states import FailureCategory, HostState
from mqi_es.domain import Case, Host, Slot
from mqi_es.domain.recorded import Recorded

NODES = {"node1": "10.0.0.11", "node2": "10.0.0.12"}
GROUPS = ["gpu0", "gpu1", "gpu2", "gpu3"]
OUTAGE_EVERY = 2_000
ACTOR = "daemon"
_CASE_SPACING = timedelta(minutes=3)
_RUN_TIME = timedelta(minutes=9)
# What a real case's events carry: a digest per file sent (a plan, a few delivery logs) and
# per result file, as the transfers record them.
_INPUT_DIGESTS = [[f"delivery/layer{i}.ptn", 600_000, f"{i:064x}"] for i in range(12)]
_RESULT_DIGESTS = [[f"output/RD_beam{i}.dcm", 3_000_000, f"{i + 100:064x}"] for i in range(3)]
_MANIFEST_SHA256 = "f" * 64

Batch = list[Recorded | Recorded.Event]  # what one Ledger.save() records


def event_count(batch: Batch) -> int:
    return sum(len(x.pending_events) if isinstance(x, Recorded) else 1 for x in batch)


class Installation:
    """The hosts and GPU slots of a small site, and the cases it runs, oldest first."""

    def __init__(self) -> None:
        self.hosts = {name: Host(name=name, address=ip, actor=ACTOR) for name, ip in NODES.items()}
        self.slots = [
            Slot(host=name, name=group, actor=ACTOR) for name in NODES for group in GROUPS
        ]
        self._cases = 0
        self._clock = datetime(2026, 1, 1, tzinfo=UTC)
        for host in self.hosts.values():
            host.record_reachable(at=self._clock, actor=ACTOR)

    def batches(self, events: int, *, per_save: int = 1_000) -> Iterator[Batch]:
        """What to save together, batch by batch: about ``per_save`` events each and
        ``events`` in all, the last cases left running.

        The cases go as aggregates, the hosts' and slots' events as events (taken from
        them here), so every batch stands alone and they can all be built before saving.
        """
        to_finish = max(0, events // 9 - len(self.slots))
        cases: list[Case] = []
        pending = 0
        for index in range(to_finish + len(self.slots)):
            case = self._run(finish=index < to_finish)
            cases.append(case)
            pending += len(case.pending_events)
            if pending + self._pending_on_site() >= per_save:
                yield [*cases, *self._site_events()]
                cases, pending = [], 0
        if cases or self._pending_on_site():
            yield [*cases, *self._site_events()]

    def _pending_on_site(self) -> int:
        return sum(len(a.pending_events) for a in (*self.hosts.values(), *self.slots))

    def _site_events(self) -> list[Recorded.Event]:
        return [e for a in (*self.hosts.values(), *self.slots) for e in a.collect_events()]

    def _run(self, *, finish: bool) -> Case:
        number = self._cases
        self._cases += 1
        self._clock += _CASE_SPACING
        slot = self.slots[number % len(self.slots)]
        case = Case(
            case_id=f"case-{number:07d}",
            file_count=12 + number % 40,
            total_bytes=48_000_000 + number % 7_919 * 1_000,
            fingerprint=f"{number * 2_654_435_761 % 2**64:016x}",
            actor=ACTOR,
        )
        if number % OUTAGE_EVERY == OUTAGE_EVERY - 1:
            self._lose_first_attempt(case, slot)
        attempt = self._start(case, slot)
        if not finish:
            return case
        case.record_remote_success(attempt=attempt, ended_at=self._clock + _RUN_TIME, actor=ACTOR)
        slot.release(case_id=case.case_id, attempt=attempt, actor=ACTOR, reason="task succeeded")
        if number % 10:
            case.complete(
                attempt=attempt,
                files=3,
                bytes=9_000_000,
                results_dir=f"/data/results/{case.case_id}",
                digests=_RESULT_DIGESTS,
                manifest_sha256=_MANIFEST_SHA256,
                actor=ACTOR,
            )
        else:
            case.fail(
                category=FailureCategory.CASE_FAILURE,
                actor=ACTOR,
                reason="simulation exited with status 2",
                exit_code=2,
                log_tail="ERROR: dose grid exceeds the CT volume\n",
            )
        return case

    def _start(self, case: Case, slot: Slot) -> int:
        case.start_submission(
            host=slot.host, slot=slot.name, remote_base_dir="~/mqi_cases", actor=ACTOR
        )
        slot.allocate(case_id=case.case_id, attempt=case.attempt, actor=ACTOR)
        case.record_upload(
            attempt=case.attempt, files=case.file_count, bytes=case.total_bytes, seconds=0.4,
            digests=_INPUT_DIGESTS, manifest_sha256=_MANIFEST_SHA256, actor=ACTOR,
        )  # fmt: skip
        case.record_enqueued(
            attempt=case.attempt, task_id=self._cases, created_at=self._clock, actor=ACTOR
        )
        case.record_started(attempt=case.attempt, started_at=self._clock, actor=ACTOR)
        return case.attempt

    def _lose_first_attempt(self, case: Case, slot: Slot) -> None:
        host = self.hosts[slot.host]
        self._start(case, slot)
        reason = "ssh: connection timed out"
        host.record_unavailable(
            state=HostState.UNREACHABLE, since=self._clock, actor=ACTOR, reason=reason
        )
        case.abandon_attempt(
            not_before=self._clock + _RUN_TIME, charged=True, actor=ACTOR, reason=reason
        )
        slot.release(case_id=case.case_id, attempt=case.attempt, actor=ACTOR, reason=reason)
        host.record_reachable(at=self._clock + _RUN_TIME, actor=ACTOR)
        self._clock += _RUN_TIME


def build_log(path: Path, events: int) -> int:
    """Write a new log of about ``events`` events at ``path``; returns how many."""
    ledger = Ledger(sqlite_event_store_env(path))
    try:
        for batch in Installation().batches(events, per_save=5_000):
            ledger.save(*batch)
        return ledger.recorder.max_notification_id() or 0
    finally:
        ledger.close()
