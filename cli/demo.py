"""`mqi demo`: the whole job on a sandbox GPU node, for a newcomer, in well under a minute.

The demo starts a sandbox node (the pueue stand-in behind an SSH server on 127.0.0.1, on a
thread of this process), writes a configuration for it into a fresh owner-only folder under
``var/``, drops three sample cases into its watch folder and runs the daemon in this process
until every case has ended: one completes and brings back its dose files, one's simulation
exits with an error, one runs past its (short) timeout and is killed on the node. It then
shows what ``mqi status``, ``mqi cases`` and ``mqi history`` show, and stops everything it
started, on Ctrl-C too. With ``--keep`` the node and the daemon stay up until Ctrl-C, so the
other commands can be tried from another terminal. The folder is kept for a look afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cli import render
from cli.context import Context, load_context
from cli.daemon import serving
from cli.history import show_history
from cli.status import show_status
from mqi_es.adapters.local.logs import setup_logging
from mqi_es.core.errors import ConfigError
from mqi_es.core.states import CaseState, FailureCategory
from mqi_es.core.views import CaseView
from mqi_es.sandbox import SandboxError, ThreadedSandboxNode
from mqi_es.sandbox.site import (
    EXITS_WITH_2,
    NEVER_ENDS,
    drop_sample_case,
    simulates,
    write_config,
)

TIMEOUT_SECONDS = 8  # the case timeout: the quick cases end well within it, the slow one not
DEADLINE_SECONDS = 50.0  # the three cases end in about 15 s; past this, something is wrong
POLL_SECONDS = 0.25
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C

out = render.console


def _say(text: str) -> None:
    """One line of narration, never wrapped (paths stay copyable) nor read as markup."""
    out.print(text, markup=False, soft_wrap=True)


@dataclass(frozen=True, slots=True)
class Sample:
    """A sample case: what its simulation does on the node, and how the case must end."""

    case_id: str
    script: str
    state: CaseState
    failure: FailureCategory | None = None
    exit_code: int | None = None

    @property
    def expected(self) -> str:
        return _ending(self.state, self.failure, self.exit_code)

    def met_by(self, case: CaseView | None) -> bool:
        return case is not None and _ending_of(case) == self.expected


SAMPLES = (
    Sample("DEMO001_prostate", simulates(batches=8, seconds_per_batch=0.4), CaseState.COMPLETED),
    Sample("DEMO002_head-neck", EXITS_WITH_2, CaseState.FAILED, FailureCategory.CASE_FAILURE, 2),
    Sample("DEMO003_lung", NEVER_ENDS, CaseState.FAILED, FailureCategory.TIMEOUT),
)
SHOWN_HISTORY = "DEMO003_lung"  # the richest story: queued, running, killed, failed


def run_demo(*, keep: bool, parent: Path = Path("var")) -> int:
    """Run the demo in a new folder under ``parent``; returns the exit code.

    :returns: 0 if every sample case ended as expected, 1 if not (or if the sandbox node
        did not start), 130 if interrupted.
    :raises ConfigError: the demo's folder cannot be used (e.g. ``var/`` is not writable).
    """
    started = time.monotonic()
    root = _fresh_folder(parent)
    _say(f"mqi demo: a sandbox GPU node and a daemon, data in {root}")
    try:
        with ThreadedSandboxNode(root / "node", groups=("gpu0", "gpu1")) as node:
            config = write_config(
                root,
                node,
                main_loop={"running_case_timeout_hours": TIMEOUT_SECONDS / 3600},
                web={"port": _free_port()},
            )
            context = load_context(str(config))
            _log_to_file(context)
            _say(
                f"sandbox node: pueue stand-in with groups gpu0, gpu1, SSH on "
                f"{node.host}:{node.port}; case timeout {TIMEOUT_SECONDS} s"
            )
            for sample in SAMPLES:
                drop_sample_case(context.config.scanner.watch_path, sample.case_id, sample.script)
                _say(f"dropped case {sample.case_id} (expected: {sample.expected})")
            code = asyncio.run(_demo(context, keep=keep))
    except KeyboardInterrupt:  # before the daemon's own Ctrl-C handling was in place
        code = INTERRUPTED
    except SandboxError as error:
        _say(f"demo FAILED: the sandbox node did not start: {error}")
        return 1
    if code == INTERRUPTED:
        _say("interrupted: the daemon and the sandbox node are stopped")
    else:
        _say(f"the demo took {time.monotonic() - started:.1f} s; its data stay in {root}")
    return code


async def _demo(context: Context, *, keep: bool) -> int:
    stop = asyncio.Event()
    signalled = _stop_on_signals(stop)
    async with serving(context, stop) as daemon:
        await _follow(context, daemon, stop)
        if signalled:
            return INTERRUPTED
        if keep:
            code = _report(context)
            _explain_keep(context)
            await _until_stopped(stop, daemon)
            return code
    return _report(context)  # after the daemon stopped: the final views


async def _until_stopped(stop: asyncio.Event, daemon: asyncio.Task[None]) -> None:
    """Wait for Ctrl-C (``stop``), or for the daemon to end on its own (a failure)."""
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, daemon}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()


def _stop_on_signals(stop: asyncio.Event) -> list[int]:
    """SIGINT and SIGTERM set ``stop``; the list returned collects the signals received."""
    received: list[int] = []
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):

        def handle(signum: int = signum) -> None:
            received.append(signum)
            stop.set()

        loop.add_signal_handler(signum, handle)
    return received


async def _follow(context: Context, daemon: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Narrate each sample case's changes until all have ended, ``stop`` is set, the
    daemon ends, or the deadline passes."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    reader = context.views()
    shown: dict[str, tuple[CaseState, int]] = {}
    while not stop.is_set() and not daemon.done():
        with reader.snapshot() as views:
            cases = {case.case_id: case for case in views.cases()}
        for sample in SAMPLES:
            case = cases.get(sample.case_id)
            if case is not None and shown.get(case.case_id) != (case.state, case.attempt):
                shown[case.case_id] = (case.state, case.attempt)
                _say(f"{loop.time() - began:5.1f} s  {case.case_id:<18} {_progress(case)}")
        if all(sample.case_id in cases and cases[sample.case_id].state.is_terminal
               for sample in SAMPLES):  # fmt: skip
            return
        if loop.time() - began > DEADLINE_SECONDS:
            out.print(f"[red]not every case ended within {DEADLINE_SECONDS:.0f} s[/]")
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)


def _report(context: Context) -> int:
    """Show the views as the operator's commands do; 0 if every case ended as expected."""
    out.rule("mqi status")
    show_status(context, json=False)
    out.rule("mqi cases")
    with context.views().snapshot() as views:
        cases = {case.case_id: case for case in views.cases()}
    out.print(render.cases_table(list(cases.values())))
    if SHOWN_HISTORY in cases:
        out.rule(f"mqi history {SHOWN_HISTORY}")
        show_history(context, SHOWN_HISTORY, json=False)
    out.rule("outcome")
    missed = 0
    for sample in SAMPLES:
        case = cases.get(sample.case_id)
        ended = _ending_of(case) if case else "not registered"
        verdict = "as expected" if sample.met_by(case) else f"NOT AS EXPECTED ({sample.expected})"
        missed += not sample.met_by(case)
        _say(f"{sample.case_id:<18} {ended:<30} {verdict}")
    completed = cases.get(SAMPLES[0].case_id)
    if completed is not None and completed.results_dir:
        _say(f"dose files of {completed.case_id}: {completed.results_dir}")
    if missed:
        _say(
            f"demo FAILED: {missed} case(s) did not end as expected; the daemon's log is "
            f"{context.config.logging.path}"
        )
        return 1
    _say("demo passed: every case ended as expected")
    return 0


def _explain_keep(context: Context) -> None:
    mqi = _mqi_command()
    incoming = context.config.scanner.watch_path
    config = shlex.quote(str(context.loaded.source))
    sample = shlex.quote(str(incoming / SAMPLES[0].case_id))
    slow = shlex.quote(str(incoming / SAMPLES[2].case_id))
    _say(
        "\nThe sandbox node and the daemon keep running. From another terminal:\n"
        f"  export MQI_CONFIG={config}\n"
        f"  {mqi} status\n"
        f"  {mqi} history {SAMPLES[1].case_id}\n"
        f"  {mqi} retry {SAMPLES[1].case_id}   # a new attempt (its simulation fails again)\n"
        f"  cp -r {sample} {shlex.quote(str(incoming / 'DEMO004_copy'))}   # a new case\n"
        f"  cp -r {slow} {shlex.quote(str(incoming / 'DEMO005_slow'))}   # one that runs...\n"
        f"  {mqi} cancel DEMO005_slow   # ...and is cancelled while it runs\n"
        f"The dashboard: {_dashboard_url(context)} (its token: "
        f"{context.config.database.data_dir / 'web.token'})\n"
        f"The daemon's log: {context.config.logging.path}\n"
        "Stop everything with Ctrl-C here."
    )


def _free_port() -> int:
    """A loopback port free now, for the demo's dashboard."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dashboard_url(context: Context) -> str:
    web = context.config.web
    return f"http://{web.host}:{web.port}/" if web else "(none)"


def _progress(case: CaseView) -> str:
    where = f"{case.host}/{case.slot}"
    match case.state:
        case CaseState.WAITING:
            return "registered, waiting for a free GPU"
        case CaseState.SUBMITTING:
            return f"uploading to {where} (attempt {case.attempt})"
        case CaseState.QUEUED:
            return f"queued on {where} as pueue task {case.task_id}"
        case CaseState.RUNNING:
            return f"running on {where}"
        case CaseState.KILLING:
            return f"being killed on {where} ({case.kill_cause})"
        case CaseState.RETRIEVING:
            return "succeeded; fetching its result files"
        case CaseState.COMPLETED:
            return "completed"
        case CaseState.FAILED | CaseState.HELD:
            return f"{_ending_of(case)}: {case.reason}"


def _ending_of(case: CaseView) -> str:
    return _ending(case.state, case.failure, case.exit_code)


def _ending(state: CaseState, failure: FailureCategory | None, exit_code: int | None) -> str:
    """``completed``, ``failed (timeout)``, ``failed (case_failure, exit 2)``, ..."""
    details = [str(failure)] if failure else []
    details += [f"exit {exit_code}"] if exit_code is not None else []
    return f"{state} ({', '.join(details)})" if details else str(state)


def _fresh_folder(parent: Path) -> Path:
    """A new owner-only folder ``parent/demo-<time>-<random>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"demo-{stamp}-", dir=parent)).absolute()
    except OSError as exc:
        raise ConfigError(f"cannot create the demo's folder in {parent}: {exc.strerror}") from None


def _log_to_file(context: Context) -> None:
    """The daemon's log goes to its file; the console gets only its warnings and errors,
    so that the demo's own narration stays readable."""
    settings = context.config.logging
    setup_logging(
        settings.path, level=settings.level, max_bytes=settings.max_bytes,
        backups=settings.backups,
    )  # fmt: skip
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


def _mqi_command() -> str:
    """How this ``mqi`` was started, absolute, so the commands shown work from anywhere."""
    started_as = Path(sys.argv[0])
    return shlex.quote(str(started_as.absolute())) if started_as.name == "mqi" else "mqi"
