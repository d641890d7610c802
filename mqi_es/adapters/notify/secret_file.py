"""A secret read from its file at each send (a rotated one takes effect at once), never
from the configuration and never shown in an outcome."""

from __future__ import annotations

from pathlib import Path

from mqi_es.core.notices import NotDelivered


def read_secret(path: Path, what: str, *, keep_spaces: bool) -> str | NotDelivered:
    """The file's contents without the line ending (``keep_spaces``: spaces may belong to
    it, as to a password) or without any surrounding whitespace (a token)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return NotDelivered(f"{what} {path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return NotDelivered(f"{what} {path} is unreadable: {why}")
    secret = text.rstrip("\r\n") if keep_spaces else text.strip()
    if not secret:
        return NotDelivered(f"{what} {path} is empty")
    return secret
