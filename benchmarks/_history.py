"""Builds a realistic event log of a given size quickly, for the benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mqi_es.application import Ledger
from mqi_es.domain import Case, GpuSlot, Host
from mqi_es.states import FailureCategory
from mqi_es.store import sqlite_event_store_env

GROUPS = [f"gpu{i}" for i in range(8)]
ACTOR = "daemon"


def build_log(path: Path, events: int, *, active: int = 0, chunk_cases: int = 500) -> Ledger:
    """Fill a new log at ``path`` with about ``events`` events of finished cases
    (9 events each: case lifecycle plus slot allocation and release), then ``active``
    cases left running."""
    ledger = Ledger(sqlite_event_store_env(path))
    host = Host(name="node1", address="127.0.0.1", actor=ACTOR)
    slots = [GpuSlot(host="node1", group=g, actor=ACTOR) for g in GROUPS]
    ledger.save(host, *slots)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    n_cases = max(0, (events - 9 * active) // 9)
    done = 0
    while done < n_cases + active:
        batch: list[Case | GpuSlot] = []
        for i in range(done, min(done + chunk_cases, n_cases + active)):
            slot = slots[i % len(slots)]
            case = Case(
                case_id=f"case-{i:07d}",
                file_count=12,
                total_bytes=48_000_000,
                fingerprint=f"{i:016x}",
                actor=ACTOR,
            )
            case.start_submission(
                host="node1", group=slot.group, remote_base_dir="~/mqi", actor=ACTOR
            )
            slot.allocate(case_id=case.case_id, attempt=1, actor=ACTOR)
            case.record_upload(attempt=1, files=12, bytes=48_000_000, seconds=0.4, actor=ACTOR)
            case.record_enqueued(attempt=1, task_id=i, created_at=now, actor=ACTOR)
            case.record_started(attempt=1, started_at=now, actor=ACTOR)
            if i < n_cases:
                case.record_remote_success(
                    attempt=1, ended_at=now + timedelta(minutes=9), actor=ACTOR
                )
                slot.release(case_id=case.case_id, attempt=1, actor=ACTOR, reason="done")
                if i % 10:
                    case.complete(
                        attempt=1,
                        files=3,
                        bytes=9_000_000,
                        results_dir=f"/results/{case.case_id}",
                        actor=ACTOR,
                    )
                else:
                    case.fail(
                        category=FailureCategory.CASE_FAILURE,
                        actor=ACTOR,
                        reason="exit 2",
                        exit_code=2,
                        log_tail="error: dose grid",
                    )
            else:
                # Active cases keep their slot; slots only model one holder, so use a
                # fresh slot aggregate per active case.
                slot.release(case_id=case.case_id, attempt=1, actor=ACTOR, reason="bench")
            batch.append(case)
        ledger.save(*batch, *slots)
        done += chunk_cases
    return ledger
