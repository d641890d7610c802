"""`mqi history CASE`: the audit trail of one case, as a table or as JSON."""

from __future__ import annotations

from cli.context import Context
from cli.json_output import emit_json


def show_history(context: Context, case_id: str, *, json: bool) -> None:
    """:raises CaseNotFound: no case of that name was ever registered."""
    from projections.history import case_history

    with context.views().snapshot() as views:
        entries = case_history(context.feed, views, case_id)
    if json:
        emit_json([entry.to_json() for entry in entries])
        return
    from cli import render

    render.console.print(render.history_table(case_id, entries))
