"""SHA-256 digests computed on a node, in one command for many files. Pure.

The node hashes the files named (NUL-separated) on the command's stdin, in that order,
one output line per file: with ``openssl dgst -sha256 -r`` where OpenSSL answers (it uses
the CPU's SHA instructions, several times the speed of coreutils), else with coreutils'
``sha256sum``. Both print the digest first (``sha256sum`` escapes a name with a backslash,
newline or carriage return and marks the line with a leading ``\\``; OpenSSL prints names
as they are, so it is used only for names without control characters).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_DIGEST = re.compile(r"\\?([0-9a-f]{64})[ *]", re.ASCII)

_COREUTILS = "xargs -0 -r sha256sum --"
_OPENSSL = "xargs -0 -r openssl dgst -sha256 -r"


class SumsError(ValueError):
    """Raised when the node's hashing printed something else than one digest per file."""


def hash_command(names: Sequence[str]) -> str:
    """The shell command that prints the SHA-256 of each of ``names`` (given on stdin)."""
    if any(ord(char) < 0x20 for name in names for char in name):
        return _COREUTILS  # one line per file whatever the name: its escapes keep it so
    return f"if openssl version >/dev/null 2>&1; then {_OPENSSL}; else {_COREUTILS}; fi"


def names_input(names: Sequence[str]) -> str:
    """What ``hash_command`` reads on stdin: each name as ``./name``, so that none can be
    taken for an option (``-out`` would make OpenSSL write over a file)."""
    return "".join(f"./{name}\0" for name in names)


def read_digests(stdout: str, count: int) -> list[str]:
    """The hex digests ``hash_command`` printed, in the order of the names.

    :raises SumsError: not exactly ``count`` lines that each start with a digest.
    """
    lines = stdout.removesuffix("\n").split("\n") if stdout else []
    if len(lines) != count:
        raise SumsError(f"the node's hashing printed {len(lines)} lines for {count} files")
    digests = []
    for line in lines:
        match = _DIGEST.match(line)
        if match is None:
            raise SumsError(f"unreadable digest line from the node: {line[:80]!r}")
        digests.append(match.group(1))
    return digests
