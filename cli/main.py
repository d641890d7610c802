"""The ``mqi`` command: thin commands over the composition root in ``cli.context``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from cli import failures, render
from cli.context import Context, load_context, with_live_progress
from cli.json_output import as_json, emit_json
from mqi_es.core.commands import CancelCase, RetryCase, SetCaseTimeout
from mqi_es.core.errors import MqiError
from mqi_es.core.states import CaseState

app = typer.Typer(
    help="MQI Communicator: ships proton-therapy cases to GPU nodes and keeps their history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # tracebacks must never dump keys or patient data
)
F = TypeVar("F", bound=Callable[..., object])
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
notify_app = typer.Typer(help="Notifications: test the channels, list who was told.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(notify_app, name="notify")
store_app = typer.Typer(help="The event store: copy a log into another store.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(store_app, name="store")


def _command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    """Register a command whose domain errors become one clear line and an exit code."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def mapped(*args: object, **kwargs: object) -> object:
            try:
                return fn(*args, **kwargs)
            except MqiError as e:
                raise typer.Exit(failures.report(e)) from None

        group.command(name)(mapped)
        return fn

    return register


ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="Configuration file (default: $MQI_CONFIG, else built-in defaults)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
CaseArgument = Annotated[str, typer.Argument(metavar="CASE", help="The case id (its folder name).")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the history).")]


@app.callback()
def _options(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.obj = config


def _context(ctx: typer.Context) -> Context:
    return load_context(ctx.obj)


@_command()
def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Open alarms, cases per state, GPU slots and host reachability (exit 3: an alarm is
    open)."""
    from cli.status import show_status

    raise typer.Exit(show_status(_context(ctx), json=json))


@_command()
def cases(
    ctx: typer.Context,
    state: Annotated[
        CaseState | None, typer.Option("--state", "-s", help="Only cases in this state.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List cases, oldest arrival first; a running case with how far its run got."""
    context = _context(ctx)
    with context.views().snapshot() as views:
        found = with_live_progress(views.cases(state), context.live())
    if json:
        emit_json(as_json(found))
    else:
        render.console.print(render.cases_table(found))


@_command()
def gpus(ctx: typer.Context, json: JsonOption = False) -> None:
    """GPU slots: free, allocated (to which case), busy with others' tasks, or quarantined."""
    with _context(ctx).views().snapshot() as views:
        slots = views.slots()
    if json:
        emit_json(as_json(slots))
    else:
        render.console.print(render.slots_table(slots))


@_command()
def history(
    ctx: typer.Context,
    case_id: CaseArgument,
    json: JsonOption = False,
) -> None:
    """The complete audit trail of one case, oldest first."""
    from cli.history import show_history

    show_history(_context(ctx), case_id, json=json)


@_command()
def replay(
    ctx: typer.Context,
    check: Annotated[
        bool,
        typer.Option("--check", help="Rebuild aside and report differences; change nothing."),
    ] = False,
    accept_log: Annotated[
        bool,
        typer.Option(
            "--accept-log",
            help="Rebuild from this log even though the views were built from another or a "
            "longer one (after restoring an older backup on purpose).",
        ),
    ] = False,
) -> None:
    """Rebuild every view from the event log and swap it in atomically."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from projections import runner

    context = _context(ctx)
    context.accept_log = accept_log and not check
    feed = context.feed
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=render.errors,
        transient=True,
    ) as bar:
        task = bar.add_task("replaying events", total=feed.head())

        def progress(position: int, head: int) -> None:
            bar.update(task, completed=position, total=head)

        if check:
            report = runner.check(context.views_link, feed, progress=progress)
        else:
            context.lock.acquire(user=context.actor)  # no daemon may write meanwhile
            try:
                summary = runner.replay(context.views_link, feed, progress=progress)
            finally:
                context.lock.release()
    if check:
        if report.ok:
            render.console.print(f"views match the log at event {report.position}: no difference")
            return
        for d in report.differences:
            render.console.print(
                f"[red]{d.table}[/]: {len(d.only_live)} rows only in the live views, "
                f"{len(d.only_rebuilt)} only in the rebuild "
                f"(e.g. {', '.join((d.only_live + d.only_rebuilt)[:3])})"
            )
        raise typer.Exit(1)
    render.console.print(
        f"replayed {summary.events} events in {summary.seconds:.2f} s "
        f"({summary.rate:,.0f} events/s) into {summary.path.name}"
    )


@_command()
def alarms(
    ctx: typer.Context,
    all: Annotated[
        bool, typer.Option("--all", help="Every alarm ever raised, cleared ones too.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Alarms not cleared (open, or acknowledged while their condition lasts), newest first."""
    from cli.alarms import show_alarms

    show_alarms(_context(ctx), all=all, json=json)


@_command()
def ack(
    ctx: typer.Context,
    number: Annotated[int, typer.Argument(metavar="ALARM_ID", help="Its number (mqi alarms).")],
    reason: ReasonOption = "",
) -> None:
    """Acknowledge an alarm: you have seen it (recorded with your login)."""
    from cli.alarms import acknowledge

    alarm = acknowledge(_context(ctx), number, reason or "acknowledged")
    render.console.print(f"alarm {number} ({alarm.kind}, {alarm.subject}): acknowledged",
                         markup=False)  # fmt: skip


@_command(notify_app, "test")
def notify_test(ctx: typer.Context) -> None:
    """Send a test message through each configured channel and say what happened (exit 1:
    one was not delivered)."""
    from cli.notify import send_test

    raise typer.Exit(send_test(_context(ctx)))


@_command(notify_app, "list")
def notify_list(
    ctx: typer.Context,
    due: Annotated[bool, typer.Option("--due", help="Only those not delivered yet.")] = False,
    json: JsonOption = False,
) -> None:
    """Every notification, oldest first: what, through which channel, delivered or not."""
    from cli.notify import show_notifications

    show_notifications(_context(ctx), due_only=due, json=json)


@_command(store_app, "copy")
def store_copy(
    ctx: typer.Context,
    to: Annotated[
        Path, typer.Option("--to", help="The configuration whose (empty) store receives the copy.")
    ],
) -> None:
    """Copy this log into an empty store (SQLite to PostgreSQL, or back), ids and order
    kept, and check the copy row by row; prove it with `mqi --config CONFIG replay --check`."""
    from cli.store import copy_store

    copied = copy_store(_context(ctx), to)
    render.console.print(
        f"copied {copied.events} events (up to event {copied.head}); read back, they match "
        f"the source: sha256 {copied.sha256}",
        markup=False,
    )


@_command()
def run(ctx: typer.Context) -> None:
    """Run the daemon: watch for cases, run them on the GPU nodes, record everything."""
    from cli.daemon import run_daemon

    raise typer.Exit(run_daemon(_context(ctx), ctx.obj))


@_command()
def watch(
    ctx: typer.Context,
    case_id: Annotated[
        str | None, typer.Option("--case", help="The case whose output to show first.")
    ] = None,
) -> None:
    """A live view of cases, GPUs, hosts, alarms and transfers (q quits)."""
    from cli.watch import run_watch

    raise typer.Exit(run_watch(_context(ctx), case_id))


@_command()
def web(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: web.host, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default: web.port).", min=1, max=65535)
    ] = None,
) -> None:
    """The dashboard and its JSON API, read-only, behind the token (until Ctrl-C)."""
    from cli.web.server import web_server

    context = _context(ctx)
    server = web_server(context, host, port)
    where = context.config.web.token_file if context.config.web else None
    render.console.print(
        f"mqi web: http://{server.config.host}:{server.config.port}/ (token in "
        f"{where or context.config.database.data_dir / 'web.token'})",
        markup=False,
    )
    server.run()


@_command()
def retry(ctx: typer.Context, case_id: CaseArgument, reason: ReasonOption = "") -> None:
    """Give a failed case a new attempt."""
    context = _context(ctx)
    context.bus.execute(RetryCase(case_id=case_id, reason=reason or "retry asked"))
    render.console.print(f"case {case_id}: a new attempt will be made", markup=False)


@_command()
def cancel(ctx: typer.Context, case_id: CaseArgument, reason: ReasonOption = "") -> None:
    """Cancel a case; a running task is killed and its GPU freed once the kill is confirmed."""
    context = _context(ctx)
    context.bus.execute(CancelCase(case_id=case_id, reason=reason or "cancel asked"))
    state = context.ledger.case(case_id).state
    if state.is_terminal:
        render.console.print(f"case {case_id}: cancelled", markup=False)
    else:
        render.console.print(
            f"case {case_id}: cancel recorded; the daemon stops its remote task", markup=False
        )


@_command()
def timeout(
    ctx: typer.Context,
    case_id: CaseArgument,
    hours: Annotated[
        float | None,
        typer.Argument(help="Running time allowed to this case, in hours (> 0)."),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Go back to the configured timeout.")
    ] = False,
    reason: ReasonOption = "",
) -> None:
    """Set how long one case may run before it is killed (its own timeout)."""
    if (hours is None) == (not clear):
        raise typer.BadParameter("give HOURS, or --clear")
    context = _context(ctx)
    context.bus.execute(
        SetCaseTimeout(case_id=case_id, hours=hours, reason=reason or "timeout set by an operator")
    )
    shown = f"{hours:g} h" if hours is not None else "the configured default"
    render.console.print(f"case {case_id}: timeout is now {shown}", markup=False)


@_command(config_app, "check")
def config_check(ctx: typer.Context) -> None:
    """Print the effective configuration, or what is wrong with it."""
    import yaml

    from mqi_es.config import check_config_environment

    context = _context(ctx)
    origin = context.loaded.source or "built-in defaults (no --config, no $MQI_CONFIG)"
    effective = context.config.to_builtins()
    typer.echo(f"# configuration: {origin}\n{yaml.safe_dump(effective, sort_keys=False)}")
    for warning in context.loaded.warnings:
        render.errors.print(f"warning: {warning}", markup=False)
    problems = check_config_environment(context.config)
    for problem in problems:
        render.errors.print(f"error: {problem}", markup=False)
    if problems:
        raise typer.Exit(1)


# --- trying it out and diagnosing an installation -------------------------------------


@_command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the node and the daemon running until Ctrl-C.")
    ] = False,
) -> None:
    """Run three sample cases end to end on a sandbox GPU node (its own configuration)."""
    from cli.demo import run_demo

    raise typer.Exit(run_demo(keep=keep))


@_command()
def doctor(ctx: typer.Context) -> None:
    """Check the configuration, local folders and each node: SSH, pueue, groups, clock."""
    from cli.doctor import run_doctor

    raise typer.Exit(run_doctor(ctx.obj))
