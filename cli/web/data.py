"""What the dashboard shows, read from the views and the daemon's live file only: the same
shapes as the CLI's ``--json`` (``/api/...``), and the pages' rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cli.context import Context, with_live_progress
from cli.json_output import as_json
from cli.status import StatusReport, overdue, overdue_limit, status_report
from mqi_es.adapters.local.clock import utcnow
from mqi_es.core.states import CaseState
from mqi_es.core.views import AlarmView, CaseView, SlotView

PAGE_SIZE = 50


@dataclass(frozen=True)
class CasesPage:
    cases: list[CaseView]
    total: int  # matching cases in all
    next_before: int | None  # the cursor of the next (older) page, if there is one

    def as_json(self) -> dict[str, Any]:
        return {"cases": as_json(self.cases), "total": self.total, "next_before": self.next_before}


@dataclass(frozen=True)
class CaseStory:
    case: CaseView
    history: list[dict[str, Any]]  # as `mqi history CASE --json`


class Dashboard:
    """Reads for the pages and the API; each read is one consistent snapshot."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def status(self) -> StatusReport:
        return status_report(self.context)

    def cases(
        self, *, state: CaseState | None = None, search: str = "", before: int | None = None,
        limit: int = PAGE_SIZE,
    ) -> CasesPage:  # fmt: skip
        with self.context.views().snapshot() as views:
            found, total = views.cases_page(state=state, search=search, before=before,
                                            limit=limit + 1)  # fmt: skip
        shown = with_live_progress(found[:limit], self.context.live())
        more = len(found) > limit
        return CasesPage(shown, total, shown[-1].arrival if more and shown else None)

    def case(self, case_id: str) -> CaseView | None:
        with self.context.views().snapshot() as views:
            found = views.case(case_id)
        return None if found is None else with_live_progress([found], self.context.live())[0]

    def story(self, case_id: str) -> CaseStory | None:
        """A case with its whole history, oldest first; None if no such case."""
        from projections.history import case_history

        with self.context.views().snapshot() as views:
            found = views.case(case_id)
            if found is None:
                return None
            history = [e.to_json() for e in case_history(self.context.feed, views, case_id)]
        (case,) = with_live_progress([found], self.context.live())
        return CaseStory(case, history)

    def slots(self) -> list[SlotView]:
        with self.context.views().snapshot() as views:
            return views.slots()

    def alarms(self, *, all: bool = False) -> list[AlarmView]:
        with self.context.views().snapshot() as views:
            return views.alarms(standing_only=not all)

    def healthy(self) -> tuple[bool, str]:
        """Whether the daemon's last cycle is recent, and what was seen."""
        holder, live = self.context.daemon()
        if holder is None:
            return False, "no daemon runs"
        if live.last_cycle_at is None:
            return False, "the daemon has not completed a cycle yet"
        now = utcnow()
        if overdue(live.last_cycle_at, now, overdue_limit(self.context)):
            age = (now - live.last_cycle_at).total_seconds()
            return False, f"the last cycle completed {age:.0f} s ago"
        return True, f"last cycle completed at {when(live.last_cycle_at)}"


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")
