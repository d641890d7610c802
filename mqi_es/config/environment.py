"""Problems of the local filesystem that a well-formed configuration can still have.

Read-only checks: nothing is created and nothing is connected to, so ``mqi config check``
can run them anywhere. Permissions are judged with ``os.access`` (the real user).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mqi_es.config.rules import local_outputs
from mqi_es.config.schema import Config, HostConfig
from mqi_es.config.yaml_source import format_path


def check_config_environment(config: Config) -> list[str]:
    """Every problem found, one line each, naming the key and the path; empty if none."""
    problems = _watch_folder(config.scanner.watch_path)
    problems += _output_folders(config)
    for host in config.hosts:
        problems += _host_files(host)
    return problems


def _watch_folder(path: Path) -> list[str]:
    key = "scanner.watch_path"
    mode = _mode(path)
    if isinstance(mode, str):
        return [f"{key}: folder {mode}"]
    if not stat.S_ISDIR(mode):
        return [f"{key}: {path} is not a folder"]
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        return [f"{key}: cannot list folder {path}: {exc.strerror}"]
    if not os.access(path, os.R_OK | os.X_OK):
        return [f"{key}: folder {path} is not readable and searchable by this user"]
    return []


def _output_folders(config: Config) -> list[str]:
    problems: list[str] = []
    keys_by_folder: dict[Path, list[str]] = {}
    for key, path, folder in local_outputs(config):
        keys_by_folder.setdefault(folder, []).append(format_path(key))
        if path != folder and path.exists():
            if not path.is_file():
                problems.append(f"{format_path(key)}: {path} exists and is not a file")
            elif not os.access(path, os.R_OK | os.W_OK):
                problems.append(f"{format_path(key)}: {path} is not writable by this user")
    for folder, keys in keys_by_folder.items():
        problem = _unwritable(folder)
        if problem:
            problems.append(f"{', '.join(keys)}: {problem}")
    return problems


def _unwritable(folder: Path) -> str | None:
    """Why ``folder`` cannot be written in (nor created), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create folder {folder}: {existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == folder:
            return f"folder {folder} is not writable by this user"
        return f"cannot create folder {folder}: {existing} is not writable by this user"
    return None


def _host_files(host: HostConfig) -> list[str]:
    problems: list[str] = []
    where = f"host {host.name!r}"
    if host.key_file is not None:
        problem = _key_file_problem(host.key_file)
        if problem:
            problems.append(f"{where}: key_file {problem}")
    known = host.known_hosts
    if known.exists():
        wanted = os.R_OK | (os.W_OK if host.trust_on_first_use else 0)
        if not known.is_file():
            problems.append(f"{where}: known_hosts {known} is not a file")
        elif not os.access(known, wanted):
            access = "read and written" if host.trust_on_first_use else "read"
            problems.append(f"{where}: known_hosts {known} cannot be {access} by this user")
    elif not host.trust_on_first_use:
        problems.append(
            f"{where}: known_hosts {known} does not exist and trust_on_first_use is false, so "
            f"the key of {host.host} cannot be verified: add it (ssh-keyscan {host.host}, "
            "then compare the fingerprint) or set trust_on_first_use: true"
        )
    elif problem := _unwritable(known.parent):
        problems.append(f"{where}: known_hosts cannot be recorded: {problem}")
    return problems


def _key_file_problem(path: Path) -> str | None:
    mode = _mode(path)
    if isinstance(mode, str):
        return mode
    if not stat.S_ISREG(mode):
        return f"{path} is not a file"
    if mode & 0o077:
        return (
            f"{path} can be accessed by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"SSH refuses such keys: chmod 600 {path}"
        )
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this user"
    return None


def _mode(path: Path) -> int | str:
    """The file mode of ``path``, or why it cannot be had."""
    try:
        return path.stat().st_mode
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path} cannot be reached: {exc.strerror}"
