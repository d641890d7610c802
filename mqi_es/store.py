"""Where the event log lives, chosen by configuration.

SQLite is the default (one file under ``var/``); the environment built here is what
eventsourcing reads to construct its recorders, so adding PostgreSQL is a matter of
returning ``eventsourcing.postgres`` settings for ``store: postgres``.
"""

from __future__ import annotations

import os
from pathlib import Path

# The ledger's name: the views track their position in its log under this name.
LEDGER_NAME = "mqi"

# Seconds a writer waits for SQLite's lock before giving up (eventsourcing wants an int).
SQLITE_LOCK_TIMEOUT_SECONDS = 10


def ensure_private_file(path: Path) -> None:
    """Create ``path`` (and its folder) readable by the owner only, before anyone opens it.

    SQLite gives its ``-wal`` and ``-shm`` files the permissions of the database file,
    so creating the file 0600 first keeps all three private.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    path.chmod(0o600)


def sqlite_event_store_env(path: Path) -> dict[str, str]:
    """The eventsourcing environment for an SQLite event log at ``path``."""
    ensure_private_file(path)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
    }
