"""How an attempt ends when it does not succeed: a failure, or a loss to the
infrastructure that is retried after a backoff until ``max_attempts``. Pure."""

from __future__ import annotations

from datetime import datetime

from mqi_es.core.commands import AbandonAttempt, FailCase
from mqi_es.core.policy import Policy
from mqi_es.core.states import FailureCategory
from mqi_es.core.views import CaseView


def infrastructure_loss(
    case: CaseView, reason: str, now: datetime, policy: Policy
) -> AbandonAttempt | FailCase:
    """The infrastructure lost an attempt: try again after a backoff, or fail the case
    once ``max_attempts`` attempts were lost (or if it is being cancelled anyway)."""
    charged = case.infra_failures + 1
    if case.cancel_requested:
        return failure(case, FailureCategory.CANCELLED, reason)
    if charged >= policy.max_attempts:
        return failure(
            case,
            FailureCategory.INFRASTRUCTURE,
            f"{reason}; {charged} attempts lost to the infrastructure",
        )
    return AbandonAttempt(
        case_id=case.case_id,
        not_before=now + policy.backoff(charged),
        charged=True,
        reason=f"{reason}; retrying",
    )


def failure(
    case: CaseView, category: FailureCategory, reason: str, quarantine_task_id: int | None = None
) -> FailCase:
    """The case fails; a task we could not kill also quarantines its slot."""
    return FailCase(
        case_id=case.case_id,
        category=category,
        reason=reason,
        quarantine=quarantine_task_id is not None,
        quarantine_task_id=quarantine_task_id,
    )
