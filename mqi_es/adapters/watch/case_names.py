"""Case names: which directory names can serve as case ids, which files can be sent under
their names, and how any name (even undecodable bytes) is shown in logs and events. Stdlib
only."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass

MAX_NAME_LENGTH = 128
TEMPORARY_SUFFIXES = (".part", ".tmp", ".filepart", "~")


@dataclass(frozen=True, slots=True)
class Accepted:
    """A name that is safe as a case id."""

    case_id: str


@dataclass(frozen=True, slots=True)
class NameRefused:
    """A name that is not a safe case id: ``shown`` is printable, ``reason`` says why."""

    shown: str
    reason: str


def validate_case_name(name: str | bytes) -> Accepted | NameRefused:
    """Accept ``name`` as a case id, or say why it is refused.

    ``name`` may be bytes (``os.listdir(b'...')``) or str (``os.listdir('...')``, where
    undecodable bytes arrive as surrogate escapes). The first rule broken gives the reason.
    """
    text = decode_utf8(name)
    if text is None:
        return NameRefused(show_name(name), "name is not valid UTF-8")
    reason = _name_problem(text)
    return NameRefused(show_name(name), reason) if reason else Accepted(text)


def decode_utf8(name: str | bytes) -> str | None:
    try:
        raw = name if isinstance(name, bytes) else os.fsencode(name)
        return raw.decode("utf-8")
    except UnicodeError:
        return None


def _name_problem(text: str) -> str | None:
    if not text:
        return "name is empty"
    if len(text) > MAX_NAME_LENGTH:
        return f"name is longer than {MAX_NAME_LENGTH} characters ({len(text)})"
    for separator in ("/", "\\"):
        if separator in text:
            return f"name contains a path separator ({separator!r})"
    if ".." in text:
        return "name contains '..'"
    for lead in (".", "-"):
        if text.startswith(lead):
            return f"name starts with {lead!r}"
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"name contains a control character (U+{ord(char):04X})"
        # Format, private-use, unassigned and most space characters would show up as nothing
        # or as something else: an accepted name must read in a log exactly as it is.
        if not char.isprintable():
            return f"name contains a non-printable character (U+{ord(char):04X})"
    if text != text.strip():
        return "name starts or ends with whitespace"
    return None


def show_name(name: str | bytes) -> str:
    """Render any file name printable and unambiguous, never emitting its raw bytes.

    Bytes that are not UTF-8 become ``\\xNN``, non-printable characters ``\\uNNNN`` (or
    ``\\UNNNNNNNN``) and a backslash is doubled, so distinct names always render differently.
    """
    if isinstance(name, bytes):
        raw = name
    else:
        try:
            raw = os.fsencode(name)
        except UnicodeError:  # lone surrogates that no file name can hold
            raw = name.encode("utf-8", "surrogatepass")
    out: list[str] = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, escaped by the decoder
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` looks like a file or directory still being written or staged."""
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def unsendable_name(name: str | bytes) -> str | None:
    """Why a file of a case cannot be sent under this name (not UTF-8, or holding a
    control character, which no remote tool reads back safely), or None."""
    text = decode_utf8(name)
    if text is None:
        return "has a name that is not UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "has a control character in its name: rename it"
    return None
