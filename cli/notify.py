"""`mqi notify test` and `mqi notify list`: is anybody told, and who was."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from cli.context import Context
from cli.json_output import as_json, emit_json
from mqi_es.adapters.local.clock import utcnow
from mqi_es.core.notices import Delivered, NotDelivered, Notice, NoticeKind


def send_test(context: Context) -> int:
    """A test message through each configured channel, now; the exit code: 0 if each
    delivered it, 1 if any did not or none is configured. Nothing is recorded."""
    from cli import render
    from mqi_es.bootstrap import channels

    found = channels(context.config)
    if not found:
        render.console.print(
            "no notification channel is configured (notifications.webhook, "
            "notifications.email): nobody is told of anything",
            markup=False,
        )
        return 1
    notice = Notice(
        kind=NoticeKind.TEST, dedup_key=f"test:{uuid4().hex}", at=utcnow(),
        reason=f"a test message sent by `mqi notify test` ({context.actor})",
    )  # fmt: skip

    async def send_all() -> list[Delivered | NotDelivered]:
        return await asyncio.gather(*(channel.send(notice) for channel in found.values()))

    failed = 0
    for name, outcome in zip(found, asyncio.run(send_all()), strict=True):
        if isinstance(outcome, Delivered):
            render.console.print(f"{name}: delivered ({outcome.detail})", markup=False)
        else:
            failed += 1
            render.console.print(f"{name}: NOT delivered: {outcome.detail}", markup=False)
    return 1 if failed else 0


def show_notifications(context: Context, *, due_only: bool, json: bool) -> None:
    with context.views().snapshot() as views:
        found = views.notifications(due_only=due_only)
    if json:
        emit_json(as_json(found))
        return
    from cli import render

    if not found:
        render.console.print("nothing is due" if due_only else "no notification yet", markup=False)
        return
    render.console.print(render.notifications_table(found))
