"""A complete local site around a sandbox node: configuration, watch folder and cases.

The end-to-end tests, the throughput benchmark and ``mqi demo`` all need the same thing:
a configuration that points the daemon at a sandbox node, and case folders that tell the
node's simulated dose engine what to do. Each case carries ``run.sh``, which the remote
command runs in the case folder (``sh ./run.sh <attempt>``); a real site runs MOQUI's
``tps_env`` there instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

RESULT_GLOB = "out/*.dcm"

# What a case's simulation does on the node, by name.
SUCCEEDS = (  # one dose file per beam, as MOQUI's perBeam simulation writes them
    "mkdir -p out\n"
    "for beam in 1 2; do\n"
    '  printf "RT Dose, beam %s, for %s\\n" "$beam" "$PWD" > "out/RD_beam$beam.dcm"\n'
    "done\n"
)
EXITS_WITH_2 = 'echo "tps_env: dose grid does not cover the plan" >&2\nexit 2\n'
NEVER_ENDS = "sleep 3600\n"
SLOW_FIRST_ATTEMPT = 'if [ "$1" = 1 ]; then sleep 3600; fi\n' + SUCCEEDS


def write_config(
    root: Path,
    node: Any,
    *,
    main_loop: Mapping[str, object] | None = None,
    host: Mapping[str, object] | None = None,
    scanner: Mapping[str, object] | None = None,
) -> Path:
    """Write ``root/mqi.yaml`` for a site whose only node is ``node`` (a sandbox node);
    data under ``root/var``, cases arrive in ``root/incoming``."""
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "hosts": [
            {
                "name": "sandbox",
                "host": node.host,
                "port": node.port,
                "user": node.user,
                "key_file": str(node.key_file),
                "known_hosts": str(node.known_hosts),
                "remote_base_dir": "~/mqi_cases",
                "remote_command": "sh ./run.sh {attempt}",
                "groups": ["gpu0", "gpu1"],
                "connect_timeout_seconds": 3,
                "command_timeout_seconds": 5,
                "reconnect_backoff_cap_seconds": 2,
                **(host or {}),
            }
        ],
        "scanner": {
            "watch_path": "incoming",
            "quiescence_period_seconds": 0.5,
            "rescan_interval_seconds": 1,
            **(scanner or {}),
        },
        "main_loop": {
            "sleep_interval_seconds": 0.5,
            "running_case_timeout_hours": 1,
            "retry_backoff_seconds": 1,
            "retry_backoff_cap_seconds": 5,
            "kill_confirm_timeout_seconds": 10,
            "missing_task_grace_polls": 2,
            **(main_loop or {}),
        },
        "results": {"globs": [RESULT_GLOB], "local_path": "var/results"},
        "database": {"path": "var/events.sqlite", "views_path": "var/views.sqlite"},
        "logging": {"path": "var/logs/mqi.log"},
    }
    path = root / "mqi.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def drop_case(incoming: Path, name: str, script: str, *, plan_bytes: int = 4096) -> Path:
    """Create a case folder the way a copy tool would: under a temporary name, then renamed
    into place. It holds a treatment plan stand-in and ``run.sh``."""
    staging = incoming / f".{name}.part"
    (staging / "beam1").mkdir(parents=True)
    (staging / "RP.plan.dcm").write_bytes(os.urandom(plan_bytes))
    (staging / "beam1" / "PlanInfo.txt").write_text("GantryAngle 90\nEnergy 150.0\n")
    (staging / "moqui_tps.in").write_text("SimulationType perBeam\nGPUID 0\n")
    (staging / "run.sh").write_text(script)
    case = incoming / name
    staging.rename(case)
    return case
