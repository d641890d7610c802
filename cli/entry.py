"""The `mqi` console script.

`mqi status` is served without loading typer (whose argument parsing alone costs a
hundred milliseconds): monitoring runs it every few seconds. Every other command, and any
other form of `status` (``--help``, unknown options), goes through typer.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    # Whatever any command creates (event log, views, results, logs) is owner-only: the
    # case names and results it holds are patient data.
    os.umask(0o077)
    plain = _plain_status(sys.argv[1:])
    if plain is None:
        from cli.main import app

        app()
        return
    from cli.context import load_context
    from cli.failures import report
    from cli.status import show_status
    from mqi_es.core.errors import MqiError

    config, json = plain
    try:
        code = show_status(load_context(config), json=json)
    except MqiError as error:
        sys.exit(report(error))
    sys.exit(code)


def _plain_status(argv: list[str]) -> tuple[str | None, bool] | None:
    """``(config, json)`` if argv is exactly ``[--config F | -c F] status [--json]``."""
    config = None
    if argv[:1] in (["--config"], ["-c"]) and len(argv) >= 2:
        config, argv = argv[1], argv[2:]
    elif argv and argv[0].startswith("--config="):
        config, argv = argv[0].removeprefix("--config="), argv[1:]
    if argv in (["status"], ["status", "--json"]):
        return config, argv == ["status", "--json"]
    return None
