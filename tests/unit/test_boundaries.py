"""Imports flow one way (the contracts in pyproject.toml, checked by import-linter), and
the decision core loads no adapter when it is imported."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_import_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "kept, 0 broken" in done.stdout


def test_the_decision_core_loads_no_adapter():
    probe = (
        "import sys, json; import mqi_es.core.reconcile, mqi_es.core.reactions; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('asyncssh', 'sqlite3', 'watchfiles', 'eventsourcing'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, check=True)  # fmt: skip
    assert json.loads(done.stdout) == []
