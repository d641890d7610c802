"""JSON for machines: views and histories as plain data, without loading rich."""

from __future__ import annotations

import sys
from typing import Any

import msgspec


def emit_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n")


def as_json(obj: Any) -> Any:
    return msgspec.to_builtins(obj)
