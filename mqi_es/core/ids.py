"""Deterministic identities: the same case, slot or host always gets the same aggregate id.

Detecting a case twice therefore addresses the same aggregate, and the second
registration is refused by the store instead of creating a duplicate.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from uuid import UUID, uuid5

# Fixed forever: changing it would orphan every recorded aggregate.
NAMESPACE = UUID("6f2c1d0e-3b1a-5d4e-9a7b-2c8e4f1a9b30")


def case_uuid(case_id: str) -> UUID:
    return uuid5(NAMESPACE, f"case/{case_id}")


def slot_uuid(host: str, slot: str) -> UUID:
    return uuid5(NAMESPACE, f"slot/{host}/{slot}")


def host_uuid(name: str) -> UUID:
    return uuid5(NAMESPACE, f"host/{name}")


def refusal_uuid(name_repr: str) -> UUID:
    return uuid5(NAMESPACE, f"refusal/{name_repr}")


def alarm_uuid(key: str, raised_at: datetime | None) -> UUID:
    """One alarm: the condition ``key`` raised at ``raised_at``; a condition that can only
    happen once (a case attempt's failure) is raised without a time."""
    suffix = "" if raised_at is None else f"@{raised_at.isoformat()}"
    return uuid5(NAMESPACE, f"alarm/{key}{suffix}")


def notification_uuid(channel: str, dedup_key: str) -> UUID:
    """One fact told through one channel: recorded due once, whatever repeats."""
    return uuid5(NAMESPACE, f"notification/{channel}/{dedup_key}")


def name_key(case_id: str, *, fold_case: bool) -> str:
    """What two case names must differ in to be two cases: their Unicode NFC form, and
    their letters' case too where a node's file system folds case. Folders whose names
    differ only otherwise would look the same in every listing (and share one folder on a
    case-folding node)."""
    key = unicodedata.normalize("NFC", case_id)
    return key.casefold() if fold_case else key


def case_name_uuid(key: str) -> UUID:
    return uuid5(NAMESPACE, f"case-name/{key}")


def event_log_uuid() -> UUID:
    """The one aggregate per log that holds the log's identity."""
    return uuid5(NAMESPACE, "event-log")


def slot_key(host: str, slot: str) -> str:
    """The human-readable name of a GPU slot, as shown by the CLI: ``host/slot``."""
    return f"{host}/{slot}"


TASK_LABEL_PREFIX = "mqi:"


def task_label(case_id: str, attempt: int) -> str:
    """The label of the remote task of one case attempt.

    Deterministic, so after a crash between a submission and recording its id the task can
    be found again by label instead of being submitted twice.
    """
    return f"{TASK_LABEL_PREFIX}{case_id}:a{attempt}"


def label_attempt(label: str | None) -> tuple[str, int] | None:
    """The (case id, attempt) a label of ours names; None for any other label."""
    if not label or not label.startswith(TASK_LABEL_PREFIX):
        return None
    case_id, sep, attempt = label.removeprefix(TASK_LABEL_PREFIX).rpartition(":a")
    if not sep or not case_id or not attempt.isdigit() or attempt.startswith("0"):
        return None
    return case_id, int(attempt)
