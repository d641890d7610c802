"""`mqi watch`: a live terminal view of the daemon's work, drawn with rich's ``Live``.

Every second it reads the views and the daemon's live file only (never the nodes, never
the daemon), so watching costs the daemon nothing. Cases still in hand first, then the
latest ended ones; each with its attempt, GPU, time in its state and progress. Then the GPU
slots, the hosts (reachability, clock skew), open alarms, transfers in flight, and the last
lines of the selected case's output (a running case's as the daemon last read them, a
failed case's as its failure recorded them). Fits 80x24; keys: up/down (or k/j) select a
case, q or Ctrl-C quits.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cli.context import Context, with_live_progress
from mqi_es.adapters.local.clock import utcnow
from mqi_es.adapters.local.progress import Live as LiveFile
from mqi_es.core.states import AlarmState, CaseState
from mqi_es.core.views import AlarmView, CaseView, HostView, SlotView

REFRESH_SECONDS = 1.0
ENDED_SHOWN = 20  # the latest ended cases listed after those in hand


@dataclass
class Frame:
    """One reading of what `mqi watch` shows."""

    counts: dict[CaseState, int]
    cases: list[CaseView]
    slots: list[SlotView]
    hosts: list[HostView]
    alarms: list[AlarmView]
    live: LiveFile
    daemon: str | None
    at: datetime = field(default_factory=utcnow)


def read_frame(context: Context) -> Frame:
    with context.views().snapshot() as views:
        active = views.cases(active_only=True)
        ended, _ = views.cases_page(limit=ENDED_SHOWN + len(active))
        counts, slots, hosts = views.case_counts(), views.slots(), views.hosts()
        alarms = [a for a in views.alarms(standing_only=True) if a.state is AlarmState.OPEN]
    holder, live = context.daemon()
    finished = [c for c in ended if c.state.is_terminal][:ENDED_SHOWN]
    cases = with_live_progress([*active, *finished], live)
    return Frame(counts, cases, slots, hosts, alarms, live, holder.describe() if holder else None)


class Watch:
    """What is drawn, and which case is selected."""

    def __init__(self, context: Context, selected: str | None = None) -> None:
        self.context = context
        self.selected = selected
        self._failure_tails: dict[str, str] = {}

    def move(self, frame: Frame, step: int) -> None:
        ids = [c.case_id for c in frame.cases]
        if not ids:
            return
        at = ids.index(self.selected) if self.selected in ids else -step
        self.selected = ids[max(0, min(len(ids) - 1, at + step))]

    def render(self, frame: Frame, height: int) -> RenderableType:
        if self.selected is None and frame.cases:
            self.selected = frame.cases[0].case_id
        tail = self._tail(frame)
        fixed = 4 + len(frame.slots) + len(frame.hosts) + min(len(frame.alarms), 3)
        fixed += len(frame.live.transfers) + (min(len(tail), 6) + 1 if tail else 0)
        rows = max(3, height - fixed - 4)
        parts: list[RenderableType] = [self._header(frame), self._cases(frame, rows)]
        parts.append(self._resources(frame))
        if frame.alarms:
            parts.append(self._alarms(frame))
        if frame.live.transfers:
            parts.append(self._transfers(frame))
        if tail:
            parts.append(Text(f"output of {self.selected}:", style="bold"))
            parts.append(Text("\n".join(tail[-6:]), style="dim", overflow="ellipsis"))
        return Group(*parts)

    def _header(self, frame: Frame) -> Text:
        cycle = frame.live.last_cycle_at
        daemon = f"daemon {frame.daemon}" if frame.daemon else "daemon: not running"
        text = Text.assemble(("MQI watch ", "bold"), daemon, overflow="ellipsis", no_wrap=True)
        if cycle is not None:
            text.append(f", last cycle {_ago(frame.at, cycle)} ago")
        text.append("   q quit, up/down select", style="dim")
        counts = " ".join(f"{s.value} {frame.counts.get(s, 0)}" for s in CaseState
                          if frame.counts.get(s, 0))  # fmt: skip
        return Text.assemble(text, "\n", ("cases: ", "bold"), counts or "none")

    def _cases(self, frame: Frame, rows: int) -> Table:
        table = Table(box=None, pad_edge=False, expand=True, show_edge=False)
        for name, width in (("case", 18), ("state", 11), ("at", 2), ("gpu", 12), ("in state", 8),
                            ("progress", 16)):  # fmt: skip
            table.add_column(name, max_width=width, no_wrap=True, overflow="ellipsis")
        ids = [c.case_id for c in frame.cases]
        start = max(0, ids.index(self.selected) - rows + 1) if self.selected in ids else 0
        for case in frame.cases[start : start + rows]:
            state = case.state.value + (f":{case.failure.value}" if case.failure else "")
            table.add_row(
                case.case_id, Text(state, style=_STYLE.get(case.state, "")), str(case.attempt),
                f"{case.host}/{case.slot}" if case.host else "", _ago(frame.at, case.state_since),
                _bar(case), style="reverse" if case.case_id == self.selected else "",
            )  # fmt: skip
        return table

    def _resources(self, frame: Frame) -> Text:
        text = Text()
        for slot in frame.slots:
            holder = f" {slot.case_id}" if slot.case_id else ""
            text.append(f"gpu {slot.key} {slot.state.value}{holder}\n")
        for host in frame.hosts:
            skew = frame.live.skews.get(host.name)
            shown = f", clock {skew:+.1f} s" if skew is not None else ""
            style = "" if host.state.value == "reachable" else "red"
            text.append(f"host {host.name} {host.state.value}{shown}\n", style=style)
        text.rstrip()
        return text

    def _alarms(self, frame: Frame) -> Text:
        text = Text(f"open alarms ({len(frame.alarms)}):\n", style="bold red")
        for alarm in frame.alarms[:3]:
            text.append(f" #{alarm.number} {alarm.kind.value}: {alarm.message}\n", style="red")
        return text

    def _transfers(self, frame: Frame) -> Text:
        text = Text()
        for t in frame.live.transfers:
            share = t.done / t.total if t.total else 1.0
            bar = "#" * int(share * 20)
            text.append(f"{t.direction} {t.case_id} [{bar:<20}] {share:4.0%}\n")
        return text

    def _tail(self, frame: Frame) -> list[str]:
        case = next((c for c in frame.cases if c.case_id == self.selected), None)
        if case is None:
            return []
        if case.case_id in frame.live.tails:
            return frame.live.tails[case.case_id].splitlines()
        if case.state is CaseState.FAILED:
            if case.case_id not in self._failure_tails:
                self._failure_tails[case.case_id] = self._failure_tail(case.case_id)
            return self._failure_tails[case.case_id].splitlines()
        return []

    def _failure_tail(self, case_id: str) -> str:
        from projections.history import case_history

        with self.context.views().snapshot() as views:
            entries = case_history(self.context.feed, views, case_id)
        failed = [e for e in entries if e.event == "Failed"]
        return str(failed[-1].details.get("log_tail", "")) if failed else ""


_STYLE = {CaseState.FAILED: "red", CaseState.COMPLETED: "green", CaseState.RUNNING: "cyan"}


def _bar(case: CaseView) -> str:
    if case.progress is None:
        return ""
    filled = round(case.progress.done / case.progress.total * 6)
    return f"{'#' * filled:<6} {case.progress.done}/{case.progress.total}"


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def run_watch(context: Context, selected: str | None = None) -> int:
    console = Console()
    watch = Watch(context, selected)
    frame = read_frame(context)
    with _keys() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
        next_read = time.monotonic() + REFRESH_SECONDS
        while True:
            live.update(watch.render(frame, console.size.height), refresh=True)
            key = keys(max(0.0, next_read - time.monotonic()))
            if key in ("q", "Q", "\x03"):
                return 0
            if key in ("\x1b[A", "k"):
                watch.move(frame, -1)
            elif key in ("\x1b[B", "j"):
                watch.move(frame, +1)
            if time.monotonic() >= next_read:
                frame = read_frame(context)
                next_read = time.monotonic() + REFRESH_SECONDS
    return 0  # Ctrl-C


@contextlib.contextmanager
def _keys() -> Iterator[Callable[[float], str | None]]:
    """A reader of single keys from the terminal (cbreak mode, restored on exit); without a
    terminal, it only waits (Ctrl-C still stops)."""
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None

    def read(timeout: float) -> str | None:
        if fd is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        return os.read(fd, 8).decode(errors="replace")

    try:
        if fd is not None:
            tty.setcbreak(fd)
        yield read
    except KeyboardInterrupt:
        return
    finally:
        if fd is not None and saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
