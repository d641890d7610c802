"""`mqi doctor`: what stands between this installation and a working daemon, in one run.

One line per check: ``ok``, ``warn``, ``FAIL`` (what is wrong and what to run to fix it) or
``skip`` (it needs a check that failed). In order: the configuration (loading it, and the
local files and folders it names), that each local folder the daemon writes in takes a new
file, a PostgreSQL event store (connection, schema, lease, the server's clock), then for
each GPU node, all nodes at once: SSH (reachability, the host key, the key),
pueue's version, ``pueue status --json`` (the daemon's own poll), the configured groups
(present, one task at a time), the remote base folder (a probe file written and removed
over SFTP, as uploads write) and the clock offset between the two machines.

Each node is checked by its backend (``RemoteHost.check``), reaching it exactly as the
daemon does. Lines carry paths, host names and the queue's words; never a key or anything
of a case.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text

from cli import render
from cli.context import load_context
from mqi_es.app.ports import RemoteHost
from mqi_es.bootstrap import remote_hosts
from mqi_es.config import Config, LoadedConfig, check_config_environment
from mqi_es.config.rules import local_outputs
from mqi_es.core.checks import Finding, Verdict
from mqi_es.core.errors import ConfigError


def run_doctor(config_option: str | None) -> int:
    """Run every check, printing one line each as it ends; 1 if any failed, else 0."""
    if not logging.getLogger().handlers:
        # Failures reach the operator as findings; the library's log lines (printed by
        # logging's last-resort handler) would only repeat them.
        logging.getLogger().addHandler(logging.NullHandler())
    findings: list[Finding] = []

    def report(found: Iterable[Finding]) -> None:
        for finding in found:
            _print(finding)
            findings.append(finding)

    try:
        loaded = load_context(config_option).loaded
    except ConfigError as error:
        report([Finding("config", Verdict.FAIL, str(error))])
        return _summary(findings)
    report(examine_config(loaded))
    report(examine_local_folders(loaded.config))
    report(examine_store(loaded.config))
    if loaded.config.hosts:
        render.console.print(f"checking {len(loaded.config.hosts)} node(s)...", style="dim")
    for found in asyncio.run(_examine_hosts(loaded.config)):
        report(found)
    return _summary(findings)


def examine_config(loaded: LoadedConfig) -> list[Finding]:
    """The configuration as loaded, its warnings, and the problems of the files it names."""
    config = loaded.config
    origin = str(loaded.source) if loaded.source else "built-in defaults"
    findings = [Finding("config", Verdict.WARN, warning) for warning in loaded.warnings]
    findings += [
        Finding("config", Verdict.FAIL, problem) for problem in check_config_environment(config)
    ]
    if not any(f.verdict is Verdict.FAIL for f in findings):
        findings.insert(
            0,
            Finding(
                "config",
                Verdict.OK,
                f"{origin}: {len(config.hosts)} node(s), watching {config.scanner.watch_path}",
            ),
        )
    return findings


def examine_store(config: Config) -> list[Finding]:
    """A shared PostgreSQL log: its connection, schema, lease and the server's clock."""
    from mqi_es.config.schema import PostgresDatabase

    if not isinstance(config.database, PostgresDatabase):
        return []
    from mqi_es.adapters.eventstore.checks import store_findings

    return store_findings(config.database, max_skew=config.main_loop.max_clock_skew_seconds)


def examine_local_folders(config: Config) -> list[Finding]:
    """Each local folder the daemon writes in takes a new file (created, then removed); a
    folder not created yet is probed in the nearest existing folder above it."""
    keys_by_folder: dict[Path, list[str]] = {}
    for key, _, folder in local_outputs(config):
        keys_by_folder.setdefault(folder, []).append(".".join(map(str, key)))
    return [_probe_local(folder, keys) for folder, keys in keys_by_folder.items()]


def _probe_local(folder: Path, keys: list[str]) -> Finding:
    named = f"{folder} ({', '.join(keys)})"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".mqi-doctor-", dir=existing)
        os.close(descriptor)
        Path(probe).unlink()
    except OSError as exc:
        where = "" if existing == folder else f" (it would be created in {existing})"
        return Finding(
            "local folder",
            Verdict.FAIL,
            f"cannot write in {named}{where}: {exc.strerror}",
            f"give it to the user who runs the daemon (chown), or change {', '.join(keys)}",
        )
    state = "is writable" if existing == folder else "can be created (the daemon creates it)"
    return Finding("local folder", Verdict.OK, f"{named} {state}")


async def _examine_hosts(config: Config) -> list[list[Finding]]:
    """Every check of every host, made by its backend exactly as the daemon reaches it."""
    nodes = remote_hosts(config).values()
    return list(await asyncio.gather(*(_examine(node) for node in nodes)))


async def _examine(node: RemoteHost) -> list[Finding]:
    try:
        return await node.check()
    finally:
        await node.close()


_STYLE = {
    Verdict.OK: "green",
    Verdict.WARN: "yellow",
    Verdict.FAIL: "bold red",
    Verdict.SKIP: "dim",
}


def _print(finding: Finding) -> None:
    hint = f" -- fix: {finding.hint}" if finding.hint else ""
    line = Text.assemble(
        (f"{finding.verdict.value:<4}", _STYLE[finding.verdict]),
        f"  {finding.check:<26} {finding.message}{hint}",
    )
    render.console.print(line, soft_wrap=True)


def _summary(findings: list[Finding]) -> int:
    """Print the counts; the exit code: 1 if any check failed."""
    failed = sum(f.verdict is Verdict.FAIL for f in findings)
    warned = sum(f.verdict is Verdict.WARN for f in findings)
    render.console.print(
        f"{len(findings)} checks: {failed} failed, {warned} warning(s)",
        style="bold red" if failed else "green",
    )
    return 1 if failed else 0
