"""Choosing, reading and checking the configuration file.

Relative local paths resolve against ``base_dir``; ``~`` in them is the local home.
``base_dir`` itself is relative to the folder holding the file and defaults to it; with
no file (built-in defaults) it is the current working directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from mqi_es.config.explain import explain
from mqi_es.config.rules import Invalid, check_sections, normalise_hosts
from mqi_es.config.schema import Config, ConfigFile, Sections, decode_path
from mqi_es.config.yaml_source import KeyPath, YamlDocument, format_path
from mqi_es.core.errors import ConfigError

CONFIG_ENV_VAR = "MQI_CONFIG"

_SECRET_KEY = re.compile(r"passw(or)?d|passphrase", re.IGNORECASE)
_S = TypeVar("_S", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """The effective configuration, what to warn the operator about, and where it came from."""

    config: Config
    warnings: list[str]
    source: Path | None  # None: built-in defaults


def resolve_config_path(cli_value: str | None, environ: Mapping[str, str]) -> Path | None:
    """The configuration file to load: ``--config`` wins over ``MQI_CONFIG``.

    :returns: the file, or None for the built-in defaults (neither given; an empty
        ``MQI_CONFIG`` counts as not given).
    :raises ConfigError: the file named does not exist or is not a file.
    """
    if cli_value is not None:
        origin, value = "--config", cli_value
    elif environ.get(CONFIG_ENV_VAR):
        origin, value = CONFIG_ENV_VAR, environ[CONFIG_ENV_VAR]
    else:
        return None
    if not value:
        raise ConfigError(f"{origin}: empty file name")
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{origin}: configuration file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{origin}: {path} is not a file")
    return path


def load_config(path: Path | None, *, cwd: Path | None = None) -> LoadedConfig:
    """Load, check and normalise the configuration.

    :param path: the file (relative to ``cwd``), or None for the built-in defaults.
    :param cwd: the working directory (default: the process's).
    :returns: the effective configuration, with a warning for each obsolete key kept
        for compatibility with the original tool.
    :raises ConfigError: one message naming the file, line, column and key path.
    """
    cwd = (cwd or Path.cwd()).resolve()
    if path is None:
        return LoadedConfig(_resolve_paths(Config(base_dir=cwd), cwd, []), [], None)
    source = cwd / path
    doc = YamlDocument.parse(_read(source, str(path)), str(path))
    file = _decode(doc)
    base_dir = (source.parent / (file.base_dir or Path()).expanduser()).resolve()
    relative: list[KeyPath] = []
    try:
        hosts, notices = normalise_hosts(file, doc.contains)
        sections = {name: getattr(file, name) for name in Sections.__struct_fields__}
        config = _resolve_paths(
            Config(base_dir=base_dir, hosts=hosts, **sections), base_dir, relative
        )
        check_sections(config)
    except Invalid as exc:
        raise doc.error(exc.path, exc.message, at_key=exc.at_key) from None
    warnings = [f"{doc.where(at, at_key=True)}: {message}" for at, message in notices]
    written = [format_path(at) for at in relative if doc.contains(at)]
    if file.hpc is not msgspec.UNSET and file.base_dir is None and written:
        warnings.append(
            f"{doc.name}: {', '.join(written)}: relative paths now resolve against the "
            f"folder of this file ({base_dir}), not the working directory; set base_dir "
            "to the folder the original tool ran in to keep the old locations"
        )
    if doc.data is None:
        warnings.append(f"{doc.name}: the file is empty: built-in defaults are used")
    if not hosts:
        warnings.append(f"{doc.name}: no hosts configured: cases are registered but never run")
    return LoadedConfig(config, warnings, source)


def _decode(doc: YamlDocument) -> ConfigFile:
    """The file's data as a ``ConfigFile``, refusing secrets before anything else."""
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise doc.error((), "the file must be a mapping of sections (hosts:, scanner:, ...)")
    for key_path, key in doc.written_keys():
        if _SECRET_KEY.search(key) and not key.endswith("_file"):  # a file holding it: fine
            raise doc.error(key_path, _NO_PASSWORDS, at_key=True)
    database = data.get("database")
    if isinstance(database, dict) and "store" not in database:
        data = {**data, "database": {"store": "sqlite", **database}}  # the default store
    try:
        return msgspec.convert(data, ConfigFile, strict=True, dec_hook=decode_path)
    except msgspec.ValidationError as exc:
        raise explain(doc, str(exc)) from None


_NO_PASSWORDS = (
    "passwords are not accepted in the configuration: use a key file (key_file) "
    "or the SSH agent, a password_file where one is asked for, and remove this key"
)


MAX_CONFIG_BYTES = 1024 * 1024  # a configuration is a few kB; anything this big is a mistake


def _read(source: Path, name: str) -> str:
    try:
        with source.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # never more: a huge file is refused at once
    except FileNotFoundError:
        raise ConfigError(f"{name}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a folder, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the configuration file: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{name}: the file is larger than {MAX_CONFIG_BYTES:,} bytes, far more than a "
            "configuration needs: is it the right file?"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{name}:{line}: the file is not UTF-8 text") from None


def _resolve_paths(config: Config, base_dir: Path, relative: list[KeyPath]) -> Config:
    """Every local path made absolute: ``~`` expanded, relative ones joined to base_dir."""

    def local(at: KeyPath, path: Path) -> Path:
        path = path.expanduser()
        if path.is_absolute():
            return path
        relative.append(at)
        return base_dir / path

    return _map_paths(config, local, ())


def _map_paths(struct: _S, change: Callable[[KeyPath, Path], Path], at: KeyPath) -> _S:
    updates: dict[str, Any] = {}
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if isinstance(value, Path):
            updates[name] = change((*at, name), value)
        elif isinstance(value, msgspec.Struct):
            updates[name] = _map_paths(value, change, (*at, name))
        elif isinstance(value, tuple) and value and isinstance(value[0], msgspec.Struct):
            updates[name] = tuple(
                _map_paths(item, change, (*at, name, index)) for index, item in enumerate(value)
            )
    return msgspec.structs.replace(struct, **updates)
