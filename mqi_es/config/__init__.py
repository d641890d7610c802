"""Strict configuration: a YAML file decoded into frozen msgspec Structs.

Unknown keys, wrong types and out-of-range values are refused with one message naming
the file, line, column and key path (``ConfigError``); nothing is silently dropped.
Keys of the original tool still load, with a warning for each that no longer applies.
"""

from mqi_es.config.environment import check_config_environment
from mqi_es.config.loader import CONFIG_ENV_VAR, LoadedConfig, load_config, resolve_config_path
from mqi_es.config.schema import (
    Config,
    DatabaseConfig,
    HostConfig,
    LoggingConfig,
    MainLoopConfig,
    ResultsConfig,
    ScannerConfig,
    SqliteDatabase,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "Config",
    "DatabaseConfig",
    "HostConfig",
    "LoadedConfig",
    "LoggingConfig",
    "MainLoopConfig",
    "ResultsConfig",
    "ScannerConfig",
    "SqliteDatabase",
    "check_config_environment",
    "load_config",
    "resolve_config_path",
]
