"""What the stand-in pueued says about a task's output: its log text and spawn errors.

Both are shaped like pueue 3.x's own answers (checked against ``tests/data/pueue-samples``):
``pueue log --lines N`` joins the last lines without a final newline, and a failed spawn
carries Rust's ``Debug`` of the OS error.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# Rust's io::ErrorKind for the errno values a spawn can meet (std's decode_error_kind).
_ERROR_KINDS = {
    errno.ENOENT: "NotFound",
    errno.EACCES: "PermissionDenied",
    errno.EPERM: "PermissionDenied",
    errno.ENOTDIR: "NotADirectory",
    errno.ENOMEM: "OutOfMemory",
    errno.E2BIG: "ArgumentListTooLong",
    errno.ELOOP: "FilesystemLoop",
    errno.ENAMETOOLONG: "InvalidFilename",
    errno.ETXTBSY: "ExecutableFileBusy",
}


def rust_os_error(error: OSError) -> str:
    """Rust's ``Debug`` of an OS ``io::Error``, as pueue puts it into FailedToSpawn."""
    code = error.errno or 0
    kind = _ERROR_KINDS.get(code, "Uncategorized")
    return f'Os {{ code: {code}, kind: {kind}, message: "{os.strerror(code)}" }}'


def log_text(path: Path, lines: int | None) -> str:
    """A task's log as ``pueue log --json [--lines N]`` puts it in ``output``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return (
            "(Pueue error) Failed to get log file handle: I/O error at path "
            f'"{path}" while getting log file handle:\n'
            f"{os.strerror(error.errno or errno.EIO)} (os error {error.errno})"
        )
    text = data.decode("utf-8", errors="replace")
    if lines is None:
        return text
    # pueue reads the last lines backwards and joins them with "\n": no final newline.
    rows = [row.removesuffix("\r") for row in text.split("\n")]
    if rows and rows[-1] == "":
        rows.pop()
    return "\n".join(rows[len(rows) - lines :]) if lines else ""
