"""How the project's errors reach an operator: one clear line and an exit code."""

from __future__ import annotations

import sys

from mqi_es.core.errors import ConfigError, MqiError


def report(error: MqiError) -> int:
    """Print ``error`` on stderr (no traceback) and return the exit code for it."""
    if isinstance(error, ConfigError):
        sys.stderr.write(f"configuration error: {error}\n")
        return 2
    sys.stderr.write(f"{error}\n")
    return 1
