"""Which pueue release the stand-in imitates: 4.0.4 (``v4``, default) or 3.4.1 (``v3``).

The choice is a node setting stored beside the daemon's state, because the client needs it
too (its error messages differ) even when the daemon is down.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, cast

Dialect = Literal["v3", "v4"]

VERSIONS: dict[Dialect, str] = {"v4": "4.0.4", "v3": "3.4.1"}


def write_dialect(path: Path, dialect: Dialect) -> None:
    if dialect not in VERSIONS:
        raise ValueError(f"unknown pueue dialect {dialect!r}: choose one of {sorted(VERSIONS)}")
    path.write_text(json.dumps({"dialect": dialect}))
    path.chmod(0o600)


def read_dialect(path: Path) -> Dialect:
    try:
        dialect = json.loads(path.read_text())["dialect"]
    except FileNotFoundError:
        return "v4"
    if dialect not in VERSIONS:
        raise ValueError(f"{path}: unknown pueue dialect {dialect!r}")
    return cast(Dialect, dialect)
