"""``sha256sum``'s text format, both ways. Pure.

The node checks an upload with ``sha256sum --check`` and reports the digests of results
with ``sha256sum``: GNU coreutils writes ``<hex>  <name>``, and for a name holding a
backslash, newline or carriage return, a leading ``\\`` with those escaped (``\\\\``,
``\\n``, ``\\r``). Uploads never carry control characters in names (they are refused
before sending), so the lines we write only ever need the backslash escape, which every
coreutils version reads; results may have any name, so all three are read back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_LINE = re.compile(r"(\\?)([0-9a-f]{64})  (.*)", re.ASCII | re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPED = {"\\": "\\", "n": "\n", "r": "\r"}


class SumsError(ValueError):
    """Raised when ``sha256sum`` printed something that is not its format."""


def check_lines(digests: Iterable[tuple[str, str]]) -> str:
    """The input of ``sha256sum --check`` for (relative path, hex digest) pairs."""
    lines = []
    for relpath, digest in digests:
        if any(ord(char) < 0x20 for char in relpath):
            raise ValueError(f"{relpath!r}: control characters are not sent to sha256sum")
        if "\\" in relpath:
            lines.append(f"\\{digest}  {relpath.replace(chr(92), chr(92) * 2)}\n")
        else:
            lines.append(f"{digest}  {relpath}\n")
    return "".join(lines)


def parse_sums(stdout: str) -> list[tuple[str, str]]:
    """(name, hex digest) of each line ``sha256sum FILE...`` printed, in order.

    :raises SumsError: a line that is not ``sha256sum``'s.
    """
    found: list[tuple[str, str]] = []
    for line in stdout.removesuffix("\n").split("\n") if stdout else []:
        match = _LINE.fullmatch(line)
        if match is None:
            raise SumsError(f"unreadable sha256sum output: {line[:80]!r}")
        escaped, digest, name = match.groups()
        if escaped:
            name = _ESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(0)), name)
        found.append((name, digest))
    return found
