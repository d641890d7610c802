"""Where the current views file is: ``views.sqlite`` is a symlink to one generation.

A replay builds the next generation beside the current one and swaps the link with
one atomic rename, so a replay killed halfway leaves the old views in use, and every
generation keeps its own write-ahead log (no stale ``-wal`` file can meet a new file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_GENERATION = re.compile(r"\.gen(\d+)$")


def current(link: Path) -> Path:
    """The file the link points at; the first generation is created on first use."""
    if link.is_symlink():
        return link.parent / link.readlink()
    if link.exists():
        raise FileExistsError(
            f"{link} is a regular file; views are kept as a link to a generation file. "
            "Move it away and run `mqi replay`."
        )
    first = _generation_path(link, 1)
    _point(link, first)
    return first


def next_generation(link: Path) -> Path:
    """A fresh, unused path for the generation after every existing one."""
    numbers = [
        int(m.group(1))
        for p in link.parent.glob(f"{link.name}.gen*")
        if (m := _GENERATION.search(p.name)) is not None
    ]
    path = _generation_path(link, max(numbers, default=0) + 1)
    for leftover in _with_sidecars(path):
        leftover.unlink(missing_ok=True)  # from a replay that died before its swap
    return path


def swap_in(link: Path, generation: Path) -> None:
    """Point the link at ``generation`` atomically, then delete every other generation
    (the previous one, and any a replay that died before its swap left behind)."""
    _point(link, generation)
    for other in link.parent.glob(f"{link.name}.gen*"):
        if _GENERATION.search(other.name) and other != generation:
            for old in _with_sidecars(other):
                old.unlink(missing_ok=True)


def scratch(link: Path, purpose: str) -> Path:
    """A private path beside the views for a temporary copy (e.g. ``check``)."""
    return link.with_name(f"{link.name}.{purpose}-{os.getpid()}")


def _point(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = link.with_name(f"{link.name}.link-{os.getpid()}")
    staging.unlink(missing_ok=True)
    staging.symlink_to(target.name)
    staging.replace(link)


def _generation_path(link: Path, number: int) -> Path:
    return link.with_name(f"{link.name}.gen{number}")


def _with_sidecars(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
