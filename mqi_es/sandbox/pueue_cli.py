"""The stand-in ``pueue`` client (``bin/pueue`` runs ``python -m mqi_es.sandbox.pueue_cli``).

It parses the command line like clap, sends the command to the daemon and prints the answer.
Like pueue's client it records its whole environment with ``add`` and takes the current
folder as the task's working directory unless ``-w`` is given. When the daemon is not running
it prints pueue's own error (``... while connecting to daemon. Did you start it?``) and exits 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mqi_es.sandbox.cli_args import HelpRequested, UsageError, VersionRequested, parse_request
from mqi_es.sandbox.dialect import VERSIONS, Dialect, read_dialect
from mqi_es.sandbox.layout import PueueFiles, pueue_dir_from_env
from mqi_es.sandbox.protocol import Reply, connect, exchange


def main(argv: list[str] | None = None) -> int:
    files = PueueFiles(pueue_dir_from_env(os.environ))
    dialect = read_dialect(files.settings)
    try:
        request = parse_request(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        return _emit(Reply(stderr=error.render(), code=2))
    except HelpRequested as help_text:
        return _emit(Reply(stdout=str(help_text)))
    except VersionRequested:
        return _emit(Reply(stdout=f"pueue {VERSIONS[dialect]}\n"))
    if request["cmd"] == "add":
        request["command"] = " ".join(request["command"])
        request["path"] = request["working_directory"] or str(Path.cwd())
        request["envs"] = _client_environment()
    try:
        client = connect(files.socket)
    except OSError as error:
        detail = (
            f"I/O error at path {_rust_debug(str(files.socket))} while connecting to daemon. "
            f"Did you start it?:\n{_io_error(error)}"
        )
        chain = ["Failed to initialize client.", "Failed to initialize stream.", detail]
        return _emit(Reply(stderr=_error_report(dialect, chain), code=1))
    try:
        reply = exchange(client, request)
    except OSError as error:
        chain = [f"Unexpected I/O error:\n{_io_error(error)}"]
        return _emit(Reply(stderr=_error_report(dialect, chain), code=1))
    return _emit(reply)


def _client_environment() -> dict[str, str]:
    """The environment this process was started with, as pueue's ``vars()`` sees it.

    Read from ``/proc/self/environ`` because Python itself may add variables at start-up
    (PEP 538 sets ``LC_CTYPE`` under the C locale) that the caller never had.
    """
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    environment = {}
    for entry in raw.split(b"\0"):
        name, separator, value = entry.partition(b"=")
        if separator:
            environment[name.decode(errors="replace")] = value.decode(errors="replace")
    return environment


def _error_report(dialect: Dialect, chain: list[str]) -> str:
    """What a Rust ``main`` returning an error chain prints: color-eyre (v4), anyhow (v3)."""
    if dialect == "v4":
        lines = ["Error: "]
        for number, message in enumerate(chain):
            lines.append(f"   {number}: " + message.replace("\n", "\n      "))
        lines += [
            "",
            "Backtrace omitted. Run with RUST_BACKTRACE=1 environment variable to display it.",
            "Run with RUST_BACKTRACE=full to include source snippets.",
        ]
        return "\n".join(lines) + "\n"
    head, *causes = chain
    lines = [f"Error: {head}"]
    if len(causes) == 1:
        lines += ["", "Caused by:", "    " + causes[0].replace("\n", "\n    ")]
    elif causes:
        lines += ["", "Caused by:"]
        for number, message in enumerate(causes):
            lines.append(f"    {number}: " + message.replace("\n", "\n       "))
    return "\n".join(lines) + "\n"


def _io_error(error: OSError) -> str:
    """Rust's ``Display`` of an ``io::Error``: ``No such file or directory (os error 2)``."""
    if error.errno is None:
        return str(error)
    return f"{os.strerror(error.errno)} (os error {error.errno})"


def _rust_debug(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r") + '"'


def _emit(reply: Reply) -> int:
    for stream, text in ((sys.stdout, reply.stdout), (sys.stderr, reply.stderr)):
        if not text:
            continue
        try:
            stream.buffer.write(text.encode("utf-8", "surrogateescape"))
            stream.flush()
        except BrokenPipeError:
            # The reader went away (``| head``): point the stream at /dev/null so that the
            # interpreter's final flush does not complain, as a Rust client would not.
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    return reply.code


if __name__ == "__main__":
    sys.exit(main())
