"""The ``mqi`` command: thin commands over the composition root in ``cli.bootstrap``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from cli import render
from cli.bootstrap import Context, load_context
from mqi_es.errors import ConfigError, MqiError
from mqi_es.states import CaseState

app = typer.Typer(
    help="MQI Communicator: ships proton-therapy cases to GPU nodes and keeps their history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # tracebacks must never dump keys or patient data
)
F = TypeVar("F", bound=Callable[..., object])
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _command(group: typer.Typer = app, name: str | None = None) -> Callable[[F], F]:
    """Register a command whose domain errors become one clear line and an exit code."""

    def register(fn: F) -> F:
        @functools.wraps(fn)
        def mapped(*args: object, **kwargs: object) -> object:
            try:
                return fn(*args, **kwargs)
            except ConfigError as e:
                render.errors.print(f"configuration error: {e}", markup=False)
                raise typer.Exit(2) from None
            except MqiError as e:
                render.errors.print(str(e), markup=False)
                raise typer.Exit(1) from None

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


@app.callback()
def _options(ctx: typer.Context, config: ConfigOption = None) -> None:
    ctx.obj = config


def _context(ctx: typer.Context) -> Context:
    return load_context(ctx.obj)


@_command()
def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Cases per state, GPU slots and host reachability."""
    context = _context(ctx)
    with context.views().snapshot() as views:
        counts, slots, hosts = views.case_counts(), views.slots(), views.hosts()
    lag = context.lag()
    if json:
        render.emit_json(
            {
                "cases": {state.value: counts.get(state, 0) for state in CaseState},
                "gpus": render.as_json(slots),
                "hosts": render.as_json(hosts),
                "views_behind_log": lag,
            }
        )
        return
    render.console.print(render.status_table(counts, lag))
    render.console.print(render.slots_table(slots))
    render.console.print(render.hosts_table(hosts))


@_command()
def cases(
    ctx: typer.Context,
    state: Annotated[
        CaseState | None, typer.Option("--state", "-s", help="Only cases in this state.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """List cases, oldest arrival first."""
    with _context(ctx).views().snapshot() as views:
        found = views.cases(state)
    if json:
        render.emit_json(render.as_json(found))
    else:
        render.console.print(render.cases_table(found))


@_command()
def gpus(ctx: typer.Context, json: JsonOption = False) -> None:
    """GPU slots: free, allocated (to which case), busy with others' tasks, or quarantined."""
    with _context(ctx).views().snapshot() as views:
        slots = views.slots()
    if json:
        render.emit_json(render.as_json(slots))
    else:
        render.console.print(render.slots_table(slots))


@_command()
def history(
    ctx: typer.Context,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="The case id (its folder name).")],
    json: JsonOption = False,
) -> None:
    """The complete audit trail of one case, oldest first."""
    from projections.history import case_history

    context = _context(ctx)
    with context.views().snapshot() as views:
        entries = case_history(context.feed, views, case_id)
    if json:
        render.emit_json([entry.to_json() for entry in entries])
    else:
        render.console.print(render.history_table(case_id, entries))


@_command()
def replay(
    ctx: typer.Context,
    check: Annotated[
        bool,
        typer.Option("--check", help="Rebuild aside and report differences; change nothing."),
    ] = False,
) -> None:
    """Rebuild every view from the event log and swap it in atomically."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from projections import runner

    context = _context(ctx)
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


def main() -> None:
    """Entry point of the ``mqi`` console script."""
    app()
