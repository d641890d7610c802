"""Imports flow one way: cli -> projections -> mqi_es, and the decision core imports no
adapter (no SSH, no SQLite, no file watching)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_decision_core_loads_no_adapter():
    probe = (
        "import sys, json; import mqi_es.reconcile, mqi_es.reactions; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('asyncssh', 'sqlite3', 'watchfiles', 'eventsourcing'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, check=True)  # fmt: skip
    assert json.loads(done.stdout) == []


def test_mqi_es_never_imports_projections_or_cli():
    offenders = []
    for path in (ROOT / "mqi_es").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in ("projections", "cli")
            ]
    assert offenders == []
