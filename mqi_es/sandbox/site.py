"""A complete local site around a sandbox node: configuration, watch folder and cases.

The end-to-end tests, the throughput benchmark and ``mqi demo`` all need the same thing:
a configuration that points the daemon at a sandbox node, and case folders that tell the
node's simulated dose engine what to do. Each case carries ``run.sh``, which the remote
command runs in the case folder (``sh ./run.sh <attempt>``); a real site runs MOQUI's
``tps_env`` there instead.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# What a case's simulation does on the node, by name.
SUCCEEDS = (  # one dose file per beam, as MOQUI's perBeam simulation writes them
    "mkdir -p output\n"
    "for beam in 1 2; do\n"
    '  printf "RT Dose, beam %s, for %s\\n" "$beam" "$PWD" > "output/RD_beam$beam.dcm"\n'
    "done\n"
)
EXITS_WITH_2 = 'echo "tps_env: dose grid does not cover the plan" >&2\nexit 2\n'
NEVER_ENDS = "sleep 3600\n"


def simulates(batches: int = 10, seconds_per_batch: float = 0.3) -> str:
    """A run that prints its progress as MOQUI's tps_env does (one line as each batch
    starts), then writes its dose files like ``SUCCEEDS``."""
    return (
        f'echo "Uploading particles with batch.. : Particle count --> 555556 with {batches} '
        'batches"\n'
        "b=1\n"
        f'while [ "$b" -le {batches} ]; do\n'
        f'  echo "Generating particles for ($b of {batches} batches) in CPU .."\n'
        '  echo "Particle generation complete!"\n'
        f"  sleep {seconds_per_batch}\n"
        '  echo "Particle transportation complete!"\n'
        "  b=$((b + 1))\n"
        "done\n" + SUCCEEDS
    )


SLOW_FIRST_ATTEMPT = 'if [ "$1" = 1 ]; then sleep 3600; fi\n' + SUCCEEDS


def write_config(
    root: Path,
    node: Any,
    *,
    main_loop: Mapping[str, object] | None = None,
    host: Mapping[str, object] | None = None,
    scanner: Mapping[str, object] | None = None,
    **sections: Mapping[str, object],
) -> Path:
    """Write ``root/mqi.yaml`` for a site whose only node is ``node`` (a sandbox node);
    data under ``root/var``, cases arrive in ``root/incoming``; ``sections``: more sections
    (e.g. ``alarms``, ``notifications``) as they are."""
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
            "progress_interval_seconds": 1,
            **(main_loop or {}),
        },
        "results": {"local_path": "var/results"},  # the default globs: output/**/*.dcm, ...
        "database": {"path": "var/events.sqlite", "views_path": "var/views.sqlite"},
        "logging": {"path": "var/logs/mqi.log"},
        # Every task stays in the stand-in's queue, so that a test can count them (one per
        # attempt, never two); tests of housekeeping turn it on.
        "housekeeping": {"remove_finished_tasks": False},
        **sections,
        # A test machine's disk may be nearly full: a node keeps 1 MB free unless told.
        "alarms": {"node_disk_free_gb": 0.001, **sections.get("alarms", {})},
    }
    path = root / "mqi.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def drop_case(incoming: Path, name: str, script: str, *, plan_bytes: int = 4096) -> Path:
    """Create a minimal case folder the way a copy tool would: under a temporary name, then
    renamed into place. It holds a treatment plan stand-in and ``run.sh``."""
    return _arrive(
        incoming,
        name,
        {
            "RP.plan.dcm": os.urandom(plan_bytes),
            "beam1/PlanInfo.txt": b"GantryAngle 90\nEnergy 150.0\n",
            "moqui_tps.in": b"SimulationType perBeam\nGPUID 0\n",
            "run.sh": script.encode(),
        },
    )


def drop_sample_case(incoming: Path, name: str, script: str, *, beams: int = 2) -> Path:
    """Create a case laid out like those clinics send, with synthetic contents (no patient
    data): an RT plan (a DICOM file with a random body), one folder of machine logs per
    delivered beam (``PlanInfo.txt``, ``PlanRange.txt``, per-layer ``.ptn``/``.mgn``),
    MOQUI's ``moqui_tps.in``, and ``run.sh``, the stand-in for ``tps_env``."""
    files = {f"RP.{_DEMO_UID}.{zlib.crc32(name.encode())}.dcm": _dicom_stand_in(64 * 1024)}
    for beam in range(1, beams + 1):
        delivery = f"Beam{beam}_20260312_09{10 + beam}00"
        files[f"{delivery}/PlanInfo.txt"] = _plan_info(name, beam).encode()
        files[f"{delivery}/PlanRange.txt"] = b"".join(
            f"{layer} {energy:.1f}\n".encode() for layer, energy in _LAYERS
        )
        for layer, _ in _LAYERS:
            files[f"{delivery}/{layer:02d}_0001.ptn"] = os.urandom(8 * 1024)
            files[f"{delivery}/{layer:02d}_0001.mgn"] = os.urandom(2 * 1024)
    files["moqui_tps.in"] = _MOQUI_INPUT.encode()
    files["run.sh"] = script.encode()
    return _arrive(incoming, name, files)


def _arrive(incoming: Path, name: str, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (relative path -> content) under a hidden temporary name, then rename
    the folder into place, so the watch folder never shows a half-written case."""
    staging = incoming / f".{name}.part"
    for relpath, content in files.items():
        path = staging / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    case = incoming / name
    staging.rename(case)
    return case


_DEMO_UID = "1.2.826.0.1.3680043.8.498.7351"  # a UID root for examples, not a real plan
_LAYERS = ((1, 151.2), (2, 147.9), (3, 144.5))  # (layer, energy in MeV)
_MOQUI_INPUT = """\
GPUID 0
RandomSeed -1932780356
UseAbsolutePath false
Verbosity 0
ParentDir .
DicomDir .
logFilePath logs
GantryNum 1
BeamNumbers 0
Scorer Dose
SupressStd true
ReadStructure true
ROIName External
SourceType FluenceMap
SimulationType perBeam
ParticlesPerHistory 0.1
ScoreToCTGrid true
OutputDir out
OutputFormat dcm
OverwriteResults true
"""


def _dicom_stand_in(size: int) -> bytes:
    """The part-10 file layout (128-byte preamble, ``DICM``) around random bytes."""
    return bytes(128) + b"DICM" + os.urandom(size)


def _plan_info(case: str, beam: int) -> str:
    return (
        f"PatientID {case.split('_')[0]}\n"
        f"BeamName Beam{beam}\n"
        f"GantryAngle {90 * beam % 360:.1f}\n"
        f"NumberOfLayers {len(_LAYERS)}\n"
    )
