"""Rules that span several keys, and the turning of either host form into one list.

Each broken rule raises ``Invalid`` with the key path as written in the file; the loader
adds the file name, line and column. Ranges of single values are in ``schema.py``.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from msgspec import UNSET

from mqi_es.config.schema import (
    EXECUTABLE_PATTERN,
    Config,
    ConfigFile,
    HostConfig,
    HostSettings,
    LegacyHpc,
    LegacyPueue,
    SqliteDatabase,
)
from mqi_es.config.yaml_source import KeyPath, format_path
from mqi_es.core.errors import ConfigError
from mqi_es.core.run_progress import pattern_problem
from mqi_es.core.task_command import (
    RemoteCommandTemplate,
    TaskEnvironment,
)

Given = Callable[[KeyPath], bool]
Notice = tuple[KeyPath, str]

_REMOTE_DIR = re.compile(r"~|~/[^\x00-\x1f]*|/[^\x00-\x1f]*")
_OBSOLETE_HPC_KEYS = {
    "scp_command": "files are copied over the built-in SSH connection",
    "ssh_command": "SSH is built in; use port, key_file, or an ~/.ssh/config alias as host",
}


class Invalid(Exception):
    """A rule broken at ``path`` (as written in the file)."""

    def __init__(self, path: KeyPath, message: str, *, at_key: bool = False) -> None:
        super().__init__(f"{format_path(path)}: {message}")
        self.path = path
        self.message = message
        self.at_key = at_key


def normalise_hosts(file: ConfigFile, given: Given) -> tuple[tuple[HostConfig, ...], list[Notice]]:
    """One list of checked hosts from ``hosts:`` or from the legacy ``hpc:`` + ``pueue.groups``,
    and a warning for each obsolete key.

    :raises Invalid: both forms given, half of the legacy form, or a host rule broken.
    """
    notices: list[Notice] = []
    if file.dashboard is not UNSET:
        notices.append((
            ("dashboard",),
            "obsolete section, ignored: the dashboard is `mqi watch`, and `mqi web` (section web)",
        ))  # fmt: skip
    if isinstance(file.hosts, tuple):
        if isinstance(file.hpc, LegacyHpc):
            raise Invalid(("hpc",), _BOTH_FORMS, at_key=True)
        if isinstance(file.pueue, LegacyPueue):
            raise Invalid(("pueue",), _PUEUE_WITH_HOSTS, at_key=True)
        hosts = file.hosts
        for index, host in enumerate(hosts):
            _check_host(host, lambda key, i=index: ("hosts", i, *key))
    elif isinstance(file.hpc, LegacyHpc):
        if not isinstance(file.pueue, LegacyPueue):
            raise Invalid(
                ("hpc",), "the single-host form needs its groups in pueue.groups", at_key=True
            )
        host, legacy_notices = _legacy_host(file.hpc, file.pueue, given)
        notices.extend(legacy_notices)
        _check_host(host, _legacy_path)
        hosts = (host,)
    elif isinstance(file.pueue, LegacyPueue):
        raise Invalid(("pueue",), "pueue.groups needs the hpc section it belongs to", at_key=True)
    else:
        hosts = ()
    named = (
        (host.name, ("hosts", i, "name" if given(("hosts", i, "name")) else "host"))
        for i, host in enumerate(hosts)
    )
    _check_unique(named, "host name")
    return hosts, notices


_BOTH_FORMS = "give either hosts (a list) or the single-host hpc with pueue.groups, not both"
_PUEUE_WITH_HOSTS = "with hosts, each host lists its own groups: move pueue.groups there"


def _legacy_host(
    hpc: LegacyHpc, pueue: LegacyPueue, given: Given
) -> tuple[HostConfig, list[Notice]]:
    notices: list[Notice] = [
        (("hpc", key), f"obsolete key, ignored: {why}")
        for key, why in _OBSOLETE_HPC_KEYS.items()
        if getattr(hpc, key) is not UNSET
    ]
    settings = {name: getattr(hpc, name) for name in HostSettings.__struct_fields__}
    if isinstance(hpc.pueue_command, str):
        at = ("hpc", "pueue_command")
        if given(("hpc", "pueue")):
            raise Invalid(at, "give the pueue executable once: keep pueue, remove pueue_command")
        if not re.fullmatch(EXECUTABLE_PATTERN, hpc.pueue_command):
            raise Invalid(
                at,
                "cannot be honoured: only the pueue executable (one word: a name or a path on "
                "the node) is accepted now; set it as hpc.pueue and remove pueue_command",
            )
        settings["pueue"] = hpc.pueue_command
        notices.append((at, "obsolete key: used as the pueue executable; rename it to pueue"))
    return HostConfig(**settings, groups=pueue.groups), notices


def _legacy_path(key: KeyPath) -> KeyPath:
    return ("pueue", *key) if key[:1] == ("groups",) else ("hpc", *key)


def _check_host(host: HostConfig, path: Callable[[KeyPath], KeyPath]) -> None:
    try:
        RemoteCommandTemplate(host.remote_command)
    except ConfigError as exc:  # the template's own parser is the one authority on it
        problem = str(exc).removeprefix("remote_command").lstrip(": ")
        raise Invalid(path(("remote_command",)), problem) from None
    try:
        TaskEnvironment(host.task_env, host.task_env_from_node)
    except ConfigError as exc:
        raise Invalid(path(("task_env",)), str(exc).removeprefix("task environment: ")) from None
    if not _REMOTE_DIR.fullmatch(host.remote_base_dir):
        raise Invalid(
            path(("remote_base_dir",)),
            "must be an absolute path on the node or start with ~/ (the remote home)",
        )
    if "//" in host.remote_base_dir:
        raise Invalid(path(("remote_base_dir",)), "must not contain '//': write each / once")
    if ".." in host.remote_base_dir.split("/"):
        raise Invalid(
            path(("remote_base_dir",)), "must not climb out of a folder with '..': write it whole"
        )
    if posixpath.normpath(host.remote_base_dir.removeprefix("~")) in ("/", ".", ""):
        raise Invalid(
            path(("remote_base_dir",)),
            "must be a folder of its own (e.g. ~/mqi_cases), not / or the home itself: the "
            "daemon writes and removes case folders in it",
        )
    _check_unique(((g, path(("groups", i))) for i, g in enumerate(host.groups)), "group")
    _check_backend(host, path)


# sbatch options the Slurm backend sets itself, or that would take a job where the poll
# does not look or change when it answers: never in sbatch_options, nor any abbreviation of
# one (sbatch, like getopt_long, takes an unambiguous prefix for the whole name).
_OURS = frozenset({
    "job-name", "comment", "chdir", "output", "error", "input", "time", "gres", "partition",
    "wrap", "parsable", "requeue", "no-requeue", "array", "dependency", "export",
    "open-mode", "clusters", "cluster", "wait", "test-only", "hold", "uid", "gid",
    "export-file", "get-user-env", "batch", "kill-on-invalid-dep", "signal",
})  # fmt: skip


def _check_backend(host: HostConfig, path: Callable[[KeyPath], KeyPath]) -> None:
    if host.backend == "pueue":
        if host.slurm is not None:
            raise Invalid(path(("slurm",)), "is for backend: slurm (this host is pueue)",
                          at_key=True)  # fmt: skip
        if not host.groups:
            raise Invalid(path(("groups",)), "a pueue node needs its groups (one per GPU)")
        return
    if host.groups:
        raise Invalid(path(("groups",)), "a Slurm cluster has no groups: set slurm.slots",
                      at_key=True)  # fmt: skip
    if host.slurm is None:
        raise Invalid(path(("backend",)), "backend: slurm needs a slurm: section "
                      "(partition, slots, gres, ...)")  # fmt: skip
    for index, option in enumerate(host.slurm.sbatch_options):
        name = option.removeprefix("--").partition("=")[0]
        clash = next((ours for ours in sorted(_OURS) if ours.startswith(name)), None)
        if clash is not None:
            raise Invalid(path(("slurm", "sbatch_options", index)),
                          f"--{name} would set --{clash}, which the daemon sets or needs as "
                          "it is")  # fmt: skip


def _check_unique(items: Iterable[tuple[str, KeyPath]], what: str) -> None:
    first: dict[str, KeyPath] = {}
    for value, path in items:
        if value in first:
            also = format_path(first[value])
            raise Invalid(
                path, f"{what} {value!r} given twice (also at {also}); keep them distinct"
            )
        first[value] = path


def check_sections(config: Config) -> None:
    """Rules between keys of the sections, on resolved (absolute) paths.

    :raises Invalid: at the key to change.
    """
    loop = config.main_loop
    if loop.retry_backoff_cap_seconds < loop.retry_backoff_seconds:
        raise Invalid(
            ("main_loop", "retry_backoff_cap_seconds"),
            f"must be at least retry_backoff_seconds ({loop.retry_backoff_seconds:g})",
        )
    if (problem := pattern_problem(loop.progress_pattern)) is not None:
        raise Invalid(("main_loop", "progress_pattern"), problem)
    overdue = config.alarms.cycle_overdue_minutes * 60
    if overdue < 3 * loop.sleep_interval_seconds:
        raise Invalid(
            ("alarms", "cycle_overdue_minutes"),
            f"must be at least three cycles ({3 * loop.sleep_interval_seconds / 60:g} min with "
            f"main_loop.sleep_interval_seconds {loop.sleep_interval_seconds:g}): a healthy "
            "cycle waits for its status queries as long as one interval",
        )
    email = config.notifications.email
    if email is not None and (email.username is None) != (email.password_file is None):
        given = "username" if email.username is not None else "password_file"
        raise Invalid(
            ("notifications", "email", given),
            "username and password_file go together (the password is read from the file)",
        )
    web = config.web
    if web is not None and web.token_file is None and not is_loopback(web.host):
        raise Invalid(
            ("web", "host"),
            f"{web.host} is reachable from other machines: give web.token_file (a token you "
            "keep) to listen there",
        )
    database = config.database
    if isinstance(database, SqliteDatabase) and os.path.normpath(
        database.views_path
    ) == os.path.normpath(database.path):
        raise Invalid(("database", "views_path"), "must differ from database.path")
    for index, glob in enumerate(config.results.globs):
        if glob.startswith("/") or ".." in glob.split("/"):
            raise Invalid(
                ("results", "globs", index),
                "must be relative to the case folder on the node (no leading / and no ..)",
            )
    watch = os.path.normpath(config.scanner.watch_path)
    for key, inner, _ in local_outputs(config):
        if os.path.commonpath((watch, os.path.normpath(inner))) == watch:
            raise Invalid(
                ("scanner", "watch_path"),
                f"the watch folder holds {format_path(key)} ({inner}): anything written there "
                "would be taken for a new case; keep them apart",
            )


def local_outputs(config: Config) -> tuple[tuple[KeyPath, Path, Path], ...]:
    """What the daemon writes locally: (key, path, the folder it must be able to write in)."""
    database, log, results = config.database, config.logging.path, config.results.local_path
    event_log = (
        ((("database", "path"), database.path, database.path.parent),)
        if isinstance(database, SqliteDatabase)
        else ()
    )
    return (
        *event_log,
        (("database", "views_path"), database.views_path, database.views_path.parent),
        (("logging", "path"), log, log.parent),
        (("results", "local_path"), results, results),
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any address
